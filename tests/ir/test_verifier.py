"""The verifier accepts imported graphs and names the broken invariant otherwise."""
from __future__ import annotations

import dace
import numpy as np
import pytest

from sdflow.frontends.onnx import import_model
from sdflow.ir import Graph, TensorType, VerificationError, lookup_op, verify


@pytest.fixture
def mlp(helpers):
    return import_model(helpers.load_example("mlp").build_model())


def test_imported_examples_verify(helpers):
    for name in ("mlp", "cnn", "transformer"):
        verify(import_model(helpers.load_example(name).build_model()))


def test_wrong_output_shape_is_reported(mlp):
    mlp.sdfg.arrays["a"].shape = (mlp.sdfg.arrays["a"].shape[0], 7)
    with pytest.raises(VerificationError, match=r"node 'relu1' \(Relu\): output 'a' is f32\[batch,7\]"):
        verify(mlp)


def test_unconnected_input_is_reported(mlp):
    relu = next(n for n in mlp.op_nodes() if n.op_type == "Relu")
    for edge in list(mlp.state.in_edges(relu)):
        mlp.state.remove_edge(edge)
    with pytest.raises(VerificationError, match="input 'X' is not connected"):
        verify(mlp)


def test_second_writer_is_reported(mlp):
    spec = lookup_op("", "Relu", 17)
    mlp.add_op(spec.node_class("again", inputs=["X"], outputs=["Y"], opset=17), ["h"], ["a"])
    with pytest.raises(VerificationError, match="tensor 'a' is written 2 times"):
        verify(mlp)


def test_intermediate_without_producer_is_reported():
    graph = Graph.empty("g")
    graph.add_tensor("orphan", TensorType(np.float32, [2]))
    with pytest.raises(VerificationError, match="intermediate tensor 'orphan' has no producer"):
        verify(graph)


def test_lowered_nodes_are_rejected(mlp):
    mlp.state.add_tasklet("raw", {}, {}, "")
    with pytest.raises(VerificationError, match="unexpected node"):
        verify(mlp)


def test_dace_validation_runs(mlp):
    # A memlet that reads past the array is caught by DaCe's own validator.
    edge = next(e for e in mlp.state.edges() if e.data.data == "w2")
    edge.data = dace.Memlet("w2[0:999, 0:10]")
    with pytest.raises(VerificationError, match="DaCe validation failed"):
        verify(mlp)
