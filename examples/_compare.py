"""Shared driver of the examples: compile once, run at several batch sizes, compare with ONNX Runtime."""
from __future__ import annotations

import argparse
import sys

import numpy as np


def random_feeds(inputs: dict, batch: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Random inputs for ``inputs`` = {name: (dtype, dims)}; a dim named 'batch' takes ``batch``."""
    rng = np.random.default_rng(seed + batch)
    feeds = {}
    for name, (dtype, dims) in inputs.items():
        shape = [batch if d == "batch" else d for d in dims]
        if np.issubdtype(dtype, np.integer) or dtype == np.bool_:
            feeds[name] = rng.integers(0, 2, shape).astype(dtype)
        else:
            feeds[name] = rng.standard_normal(shape).astype(dtype)
    return feeds


def main_for(model, inputs: dict, name: str) -> None:
    import sdflow
    from sdflow.ort import compare_outputs, median_seconds, ort_session

    parser = argparse.ArgumentParser(description=f"Compile the {name} example and compare with ONNX Runtime")
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 8], help="batch sizes to run (one compile)")
    parser.add_argument("-p", "--passes", default="O2", help="pass pipeline")
    parser.add_argument("--save", metavar="FILE.onnx", help="only write the example's ONNX model here and exit")
    args = parser.parse_args()
    if args.save:
        import onnx
        onnx.save(model, args.save)
        print(f"wrote {args.save}")
        return

    compiled = sdflow.compile(model, passes=args.passes, progress=True)
    session = ort_session(model, threads=None)
    all_ok = True
    print(f"\n{name}: sdflow ({args.passes}) vs ONNX Runtime, fp32")
    for batch in args.batch:
        feeds = random_feeds(inputs, batch)
        outputs = compiled(**feeds).as_dict()
        names = [o.name for o in session.get_outputs()]
        reference = dict(zip(names, session.run(names, feeds)))
        sdflow_s = median_seconds(lambda: compiled(**feeds))
        ort_s = median_seconds(lambda: session.run(names, feeds))
        print(f"batch {batch}: sdflow {sdflow_s * 1e3:.3f} ms, onnxruntime {ort_s * 1e3:.3f} ms "
              f"(ratio {sdflow_s / ort_s:.2f}x)")
        for comparison in compare_outputs(outputs, reference):
            print("  " + str(comparison))
            all_ok &= comparison.ok
    how = f"built in {compiled.build_seconds:.1f} s" if compiled.built else "loaded from the build cache"
    print(f"one native build serves every batch size: {how}, {compiled.build_folder}")
    print("RESULT:", "all outputs match ONNX Runtime" if all_ok else "MISMATCH")
    sys.exit(0 if all_ok else 1)
