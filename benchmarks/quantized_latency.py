"""Latency of GPT-2-small (the zoo's ``gpt2``: 12 layers, hidden 768, random weights) with its products' weights
in float32 and in 4 bits (quantize-weights{bits=4,group_size=128}: nbits.h) and int8 (quantize-dynamic-int8), at
batch 1 for a few sequence lengths (1 token is a decoder's step without a KV cache: every product a GEMV), both
sdflow builds at the same fixed thread count, each timed alone: the median of 7 blocks of calls, a pause before
each block.

    python benchmarks/quantized_latency.py [--threads 2] [--seq 1 8 128]
"""
from __future__ import annotations

import argparse
import time

import numpy as np

VARIANTS = [("float32", "O2"), ("4-bit, g128", "O2,quantize-weights{bits=4,group_size=128}"),
            ("int8 dynamic", "O2,quantize-dynamic-int8")]


def latency(run, calls: int) -> float:
    for _ in range(3):
        run()
    blocks = []
    for _ in range(7):
        time.sleep(0.1)
        start = time.perf_counter()
        for _ in range(calls):
            run()
        blocks.append((time.perf_counter() - start) / calls * 1e3)
    return sorted(blocks)[3]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seq", type=int, nargs="+", default=[1, 8, 128])
    args = parser.parse_args()
    import sdflow
    from sdflow import zoo
    path = zoo.export("gpt2")
    models = []
    for label, passes in VARIANTS:
        compiled = sdflow.compile(path, passes=passes)
        compiled.set_threads(args.threads, adaptive=False)
        models.append((label, compiled))
    print("| tokens | " + " | ".join(f"{label} ms" for label, _ in models) + " | 4-bit / float32 | int8 / float32 |")
    print("|---:|" + "---:|" * (len(models) + 2))
    rng = np.random.default_rng(0)
    for seq in args.seq:
        ids = rng.integers(0, 50000, (1, seq)).astype(np.int64)
        times = [latency(lambda: compiled(input_ids=ids), 20 if seq < 64 else 5) for _, compiled in models]
        print(f"| {seq} | " + " | ".join(f"{t:.2f}" for t in times) + f" | {times[1] / times[0]:.2f} | "
              f"{times[2] / times[0]:.2f} |", flush=True)


if __name__ == "__main__":
    main()
