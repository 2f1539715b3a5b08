"""Golden text of the printed IR: header with the signature, constants, one line per op."""
from __future__ import annotations

import numpy as np
from onnx import helper

from sdflow.frontends.onnx import import_model
from sdflow.ir import print_graph

MLP_GOLDEN = """\
graph mlp(x: f32[batch,64]) -> (probs: f32[batch,10])
  const b1: f32[128]
  const b2: f32[10]
  const w1: f32[128,64]
  const w2: f32[128,10]
  h = Gemm(x, w1, b1) {transB=1} : f32[batch,128]
  a = Relu(h) : f32[batch,128]
  z = MatMul(a, w2) : f32[batch,10]
  logits = Add(z, b2) : f32[batch,10]
  probs = Softmax(logits) : f32[batch,10]
"""


def test_mlp_golden(helpers):
    graph = import_model(helpers.load_example("mlp").build_model())
    assert print_graph(graph) == MLP_GOLDEN


def test_attributes_symbolic_dims_and_absent_inputs(helpers):
    nodes = [helper.make_node("Clip", ["x", "", "hi"], ["c"], name="clip"),
             helper.make_node("Transpose", ["c"], ["t"], perm=[1, 0]),
             helper.make_node("Reshape", ["t", "shape"], ["y"], name="reshape")]
    model = helpers.make_model(nodes, [("x", np.float32, ["n", 6]), ("hi", np.float32, [])],
                               [("y", np.float32, [3, "m"])], {"shape": np.array([3, -1], np.int64)})
    text = print_graph(import_model(model))
    assert "  c = Clip(x, _, hi) : f32[n,6]\n" in text
    assert "  t = Transpose(c) {perm=[1,0]} : f32[6,n]\n" in text
    assert "  y = Reshape(t, shape) : f32[3,2*n]\n" in text
    assert text.startswith("graph test(x: f32[n,6], hi: f32[]) -> (y: f32[3,2*n])\n")


def test_printing_is_stable_across_imports(helpers):
    model = helpers.load_example("transformer").build_model()
    assert print_graph(import_model(model)) == print_graph(import_model(model.SerializeToString()))
