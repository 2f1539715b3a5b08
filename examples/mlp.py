"""A two-layer MLP (Gemm + Relu + MatMul + Add + Softmax) with a symbolic batch, compiled and compared with
ONNX Runtime."""
from __future__ import annotations

import pathlib
import sys

import numpy as np
from onnx import TensorProto, helper, numpy_helper

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from _compare import main_for  # noqa: E402  (examples/ is a folder of scripts, not a package)

INPUTS = {"x": (np.float32, ("batch", 64))}


def build_model(seed: int = 0):
    rng = np.random.default_rng(seed)
    weights = {
        "w1": rng.normal(0, 0.2, (128, 64)).astype(np.float32),
        "b1": rng.normal(0, 0.1, (128, )).astype(np.float32),
        "w2": rng.normal(0, 0.2, (128, 10)).astype(np.float32),
        "b2": rng.normal(0, 0.1, (10, )).astype(np.float32),
    }
    nodes = [
        helper.make_node("Gemm", ["x", "w1", "b1"], ["h"], name="fc1", transB=1),
        helper.make_node("Relu", ["h"], ["a"], name="relu1"),
        helper.make_node("MatMul", ["a", "w2"], ["z"], name="fc2"),
        helper.make_node("Add", ["z", "b2"], ["logits"], name="bias2"),
        helper.make_node("Softmax", ["logits"], ["probs"], name="softmax", axis=-1),
    ]
    graph = helper.make_graph(
        nodes, "mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 64])],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["batch", 10])],
        [numpy_helper.from_array(v, k) for k, v in weights.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="sdflow-examples")


if __name__ == "__main__":
    main_for(build_model(), INPUTS, name="mlp")
