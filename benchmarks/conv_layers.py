"""Convolution layers one by one: sdflow's direct kernel (Winograd F(2x2, 3x3) for 3x3 stride-1 layers, as
compiled by default), sdflow's im2col + BLAS kernel (the option ``direct_conv=false``)
and ONNX Runtime, interleaved in one process on the same thread count (so that the machine's drift hits all three
alike). Each layer is a single-Conv + Relu model with random weights.

    python benchmarks/conv_layers.py [resnet18|mobilenet_v2] [--threads 2] [--rounds 5] [--layers N]

Prints one Markdown row per layer shape (milliseconds, GFLOP/s) and the totals weighted by how often the shape
occurs in the model; the per-shape choices of ``codegen/lowering/conv_direct.uses_direct`` were made from these
numbers. A layer the direct kernel does not take shows the same kernel in both sdflow columns.
"""
from __future__ import annotations

import argparse
import os
import pathlib
import statistics
import sys
import tempfile
import time

# (input channels, output channels, image size, kernel, stride, group, layers of this shape in the model)
LAYERS = {
    "resnet18": [(3, 64, 224, 7, 2, 1, 1), (64, 64, 56, 3, 1, 1, 4), (64, 128, 56, 3, 2, 1, 1),
                 (128, 128, 28, 3, 1, 1, 3), (128, 256, 28, 3, 2, 1, 1), (256, 256, 14, 3, 1, 1, 3),
                 (256, 512, 14, 3, 2, 1, 1), (512, 512, 7, 3, 1, 1, 3), (64, 128, 56, 1, 2, 1, 1),
                 (128, 256, 28, 1, 2, 1, 1), (256, 512, 14, 1, 2, 1, 1)],
    "mobilenet_v2": [(3, 32, 224, 3, 2, 1, 1), (32, 32, 112, 3, 1, 32, 1), (32, 16, 112, 1, 1, 1, 1),
                     (16, 96, 112, 1, 1, 1, 1), (96, 96, 112, 3, 2, 96, 1), (96, 24, 56, 1, 1, 1, 1),
                     (24, 144, 56, 1, 1, 1, 2), (144, 144, 56, 3, 1, 144, 1), (144, 24, 56, 1, 1, 1, 1),
                     (144, 144, 56, 3, 2, 144, 1), (144, 32, 28, 1, 1, 1, 1), (32, 192, 28, 1, 1, 1, 3),
                     (192, 192, 28, 3, 1, 192, 2), (192, 32, 28, 1, 1, 1, 2), (192, 64, 14, 1, 1, 1, 1),
                     (64, 384, 14, 1, 1, 1, 4), (384, 384, 14, 3, 1, 384, 4), (384, 64, 14, 1, 1, 1, 3),
                     (384, 96, 14, 1, 1, 1, 1), (96, 576, 14, 1, 1, 1, 3), (576, 576, 14, 3, 1, 576, 2),
                     (576, 96, 14, 1, 1, 1, 2), (576, 576, 14, 3, 2, 576, 1), (576, 160, 7, 1, 1, 1, 1),
                     (160, 960, 7, 1, 1, 1, 3), (960, 960, 7, 3, 1, 960, 3), (960, 160, 7, 1, 1, 1, 2),
                     (960, 320, 7, 1, 1, 1, 1), (320, 1280, 7, 1, 1, 1, 1)],
}


def conv_model(c: int, m: int, size: int, k: int, stride: int, group: int):
    """Conv (pads k // 2, bias) + Relu over a [1, c, size, size] image, and its flop count."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper
    rng = np.random.default_rng(0)
    weight = (rng.standard_normal((m, c // group, k, k)) / np.sqrt(c // group * k * k)).astype(np.float32)
    bias = rng.standard_normal(m).astype(np.float32)
    out = (size + 2 * (k // 2) - k) // stride + 1
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], kernel_shape=[k, k], pads=[k // 2] * 4,
                              strides=[stride, stride], group=group), helper.make_node("Relu", ["c"], ["y"])]
    graph = helper.make_graph(nodes, "conv",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, c, size, size])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, m, out, out])],
                              [numpy_helper.from_array(weight, "w"), numpy_helper.from_array(bias, "b")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model, 2 * m * (c // group) * k * k * out * out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", nargs="?", default="resnet18", choices=sorted(LAYERS))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds of 10 timed calls each")
    parser.add_argument("--layers", type=int, default=None, help="only the first N layer shapes")
    args = parser.parse_args(argv)

    from sdflow.bench import pin_threads
    pin_threads(args.threads)  # before any native library loads
    os.environ["SDFLOW_GRAPH_CACHE"] = "0"  # the two sdflow builds differ only after the graph cache
    import numpy as np
    import onnx
    import sdflow
    from sdflow.ort import ort_session

    print(f"| layer (C->M, image, kernel, stride, group) x count | direct ms | BLAS ms | onnxruntime ms | "
          f"direct / ORT | BLAS / ORT |\n|---|---:|---:|---:|---:|---:|")
    totals = [0.0, 0.0, 0.0]
    with tempfile.TemporaryDirectory(prefix="sdflow-conv-layers-") as folder:
        for c, m, size, k, stride, group, count in LAYERS[args.model][:args.layers]:
            model, flops = conv_model(c, m, size, k, stride, group)
            path = pathlib.Path(folder) / f"conv_{c}_{m}_{size}_{k}_{stride}_{group}.onnx"
            onnx.save(model, path)
            compiled = []
            for direct in (True, False):
                compiled.append(sdflow.compile(str(path), passes="O2", options={"direct_conv": direct}))
            session = ort_session(str(path), args.threads)
            x = np.random.default_rng(1).standard_normal((1, c, size, size)).astype(np.float32)
            reference = session.run(["y"], {"x": x})[0]
            for candidate in compiled:
                error = float(np.abs(candidate(x=x).as_dict()["y"] - reference).max())
                if error > 1e-4 * max(1.0, float(np.abs(reference).max())):
                    print(f"layer {path.name}: sdflow differs from ONNX Runtime by {error:.2e}", file=sys.stderr)
                    return 1
            runners = [lambda c=compiled[0]: c(x=x), lambda c=compiled[1]: c(x=x),
                       lambda: session.run(["y"], {"x": x})]
            medians = [[], [], []]
            for _ in range(args.rounds):
                for i, run in enumerate(runners):
                    time.sleep(0.1)  # ONNX Runtime's idle workers spin for a while after a run
                    for _ in range(2):
                        run()
                    times = []
                    for _ in range(10):
                        start = time.perf_counter()
                        run()
                        times.append(time.perf_counter() - start)
                    medians[i].append(statistics.median(times))
            best = [min(values) for values in medians]
            for i in range(3):
                totals[i] += best[i] * count
            print(f"| {c}->{m}, {size}x{size}, {k}x{k}, s{stride}, g{group} x{count} | "
                  + " | ".join(f"{t * 1e3:.3f} ({flops / t / 1e9:.0f} GF/s)" for t in best)
                  + f" | {best[0] / best[2]:.2f} | {best[1] / best[2]:.2f} |", flush=True)
    print(f"| weighted total | {totals[0] * 1e3:.2f} | {totals[1] * 1e3:.2f} | {totals[2] * 1e3:.2f} | "
          f"{totals[0] / totals[2]:.2f} | {totals[1] / totals[2]:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
