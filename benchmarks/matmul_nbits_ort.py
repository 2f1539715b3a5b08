"""ONNX Runtime's side of docs/kernels.md's 4-bit table: one MatMul model per shape (one row, a float32 weight) and
the same model through ONNX Runtime's MatMulNBitsQuantizer (4 bits, block 128, asymmetric), each timed at 2 threads:
the median of 7 blocks of 50 calls, a pause before each block. sdflow's side is benchmarks/kernels/nbits_bench.cpp.

    python benchmarks/matmul_nbits_ort.py [--threads 2]
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

SHAPES = [(4096, 4096), (768, 3072), (3072, 768)]


def model(k: int, n: int):
    w = np.random.default_rng(0).standard_normal((k, n)).astype(np.float32) / k ** 0.5
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "matmul",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, k])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, n])],
                              [numpy_helper.from_array(w, "w")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def timed(proto, x, threads: int) -> float:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(proto.SerializeToString(), options, providers=["CPUExecutionProvider"])
    for _ in range(20):
        session.run(None, {"x": x})
    blocks = []
    for _ in range(7):
        time.sleep(0.1)
        start = time.perf_counter()
        for _ in range(50):
            session.run(None, {"x": x})
        blocks.append((time.perf_counter() - start) / 50 * 1e3)
    return sorted(blocks)[3]


def main() -> None:
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    for k, n in SHAPES:
        proto = model(k, n)
        x = np.random.default_rng(1).standard_normal((1, k)).astype(np.float32)
        quantizer = MatMulNBitsQuantizer(proto, block_size=128, is_symmetric=False)
        quantizer.process()
        assert any(node.op_type == "MatMulNBits" for node in quantizer.model.model.graph.node)
        print(f"1 x {k} x {n}: ONNX Runtime float32 {timed(proto, x, args.threads):.3f} ms, "
              f"MatMulNBits {timed(quantizer.model.model, x, args.threads):.3f} ms")


if __name__ == "__main__":
    main()
