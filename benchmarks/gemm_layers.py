"""Products of real models' layers, one MatMul each with a constant weight: sdflow (codegen/kernels/gemm.h on the
weight packed at load) against ONNX Runtime's MatMul (MLAS), at the same fixed thread count (sdflow's thread policy off), in one process. Each
runtime is timed alone in blocks of calls with a pause between (ONNX Runtime's workers spin after a run), medians
of the blocks, the blocks alternating between the runtimes.

    python benchmarks/gemm_layers.py [--threads 2] [--rounds 5] [--shapes 128x768x768 ...]

Default shapes: BERT-base's and GPT-2's per-layer products (QKV 768x2304, attention output 768x768, FFN
768x3072 and 3072x768) at batch 1 and 8 (M = 128 and 1024 tokens), batch-1 decoding (M = 1) and 1024^3. Prints one
Markdown row per shape (ms and GFLOP/s of both, the ratio) and checks every result against ONNX Runtime's.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

SHAPES = ["128x768x2304", "128x768x768", "128x768x3072", "128x3072x768",
          "1024x768x2304", "1024x768x768", "1024x768x3072", "1024x3072x768",
          "1x768x2304", "1x768x768", "1x768x3072", "1x3072x768", "1024x1024x1024"]


def matmul_model(m: int, k: int, n: int):
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper
    weight = numpy_helper.from_array(np.random.default_rng(0).standard_normal((k, n)).astype(np.float32) / k**0.5,
                                     "w")
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "matmul",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [m, k])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [m, n])], [weight])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def block_seconds(function, calls: int) -> float:
    start = time.perf_counter()
    for _ in range(calls):
        function()
    return (time.perf_counter() - start) / calls


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--shapes", nargs="*", default=SHAPES, metavar="MxKxN")
    args = parser.parse_args()
    for variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[variable] = str(args.threads)
    import numpy as np
    import onnx

    import sdflow
    from sdflow.ort import ort_session

    print(f"| M x K x N | sdflow ms | GFLOP/s | onnxruntime ms | GFLOP/s | ratio |\n|---|---:|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory(prefix="sdflow-gemm-layers-") as folder:
        for shape in args.shapes:
            m, k, n = (int(v) for v in shape.split("x"))
            path = os.path.join(folder, f"matmul_{shape}.onnx")
            onnx.save(matmul_model(m, k, n), path)
            compiled = sdflow.compile(path, passes="O2")
            compiled.set_threads(args.threads, adaptive=False)  # the kernel at the thread count both runtimes get
            session = ort_session(path, args.threads)
            x = np.random.default_rng(1).standard_normal((m, k)).astype(np.float32)
            reference = session.run(["y"], {"x": x})[0]
            error = float(np.abs(compiled(x=x)[0] - reference).max())
            if error > 1e-4 * max(1.0, float(np.abs(reference).max())):
                print(f"{shape}: sdflow differs from ONNX Runtime by {error:.2e}", file=sys.stderr)
                return 1
            calls = max(20, min(1000, int(1e10 / (2 * m * k * n))))
            times = {"sdflow": [], "onnxruntime": []}
            runners = {"sdflow": lambda: compiled(x=x), "onnxruntime": lambda: session.run(["y"], {"x": x})}
            for name, run in runners.items():
                time.sleep(0.2)
                block_seconds(run, calls)  # warm-up
            for _ in range(args.rounds):
                for name, run in runners.items():
                    time.sleep(0.2)
                    times[name].append(block_seconds(run, calls))
            ours, theirs = (statistics.median(times[name]) for name in ("sdflow", "onnxruntime"))
            flop = 2 * m * k * n
            print(f"| {m} x {k} x {n} | {ours * 1e3:.3f} | {flop / ours * 1e-9:.0f} | {theirs * 1e3:.3f} | "
                  f"{flop / theirs * 1e-9:.0f} | {ours / theirs:.2f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
