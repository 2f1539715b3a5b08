"""``.sdfg`` save/load round-trips the graph (printed form, constants, signature) and node classes load by
classpath in a fresh process."""
from __future__ import annotations

import subprocess
import sys

import numpy as np

from sdflow.frontends.onnx import import_model
from sdflow.ir import Graph, print_graph, verify


def test_round_trip(helpers, tmp_path):
    graph = import_model(helpers.load_example("transformer").build_model())
    graph.save(tmp_path / "g.sdfg")
    loaded = Graph.load(tmp_path / "g.sdfg")
    verify(loaded)
    assert print_graph(loaded) == print_graph(graph)
    assert loaded.inputs == graph.inputs and loaded.outputs == graph.outputs
    assert [loaded.onnx_name(n) for n in loaded.inputs] == ["x", "mask"]
    for name, value in graph.constants.items():
        np.testing.assert_array_equal(loaded.constant(name), value)


def test_node_classes_load_by_classpath_in_a_fresh_process(helpers, tmp_path):
    graph = import_model(helpers.load_example("cnn").build_model())
    graph.save(tmp_path / "g.sdfg")
    code = (f"import dace, json; s = dace.SDFG.from_file({str(tmp_path / 'g.sdfg')!r}); "
            "print(sorted({type(n).__module__ + '.' + type(n).__name__ for n in s.start_state.nodes() "
            "if not isinstance(n, dace.nodes.AccessNode)}))")
    # Only dace is imported: the classpath in the file must bring sdflow's node classes in by itself.
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "sdflow.ir.nodes.OnnxConv" in out and "sdflow.ir.nodes.OnnxBatchNormalization" in out


def test_large_constants_go_to_a_sidecar_file(helpers, tmp_path):
    graph = import_model(helpers.load_example("mlp").build_model())
    graph.save(tmp_path / "g.sdfg", inline_limit=100)
    assert (tmp_path / "g.sdfg.weights.npz").is_file()
    assert (tmp_path / "g.sdfg").stat().st_size < 60_000  # w1 and w2 (8192 + 1280 floats) are not inline
    loaded = Graph.load(tmp_path / "g.sdfg")
    verify(loaded)
    for name, value in graph.constants.items():
        np.testing.assert_array_equal(loaded.constant(name), value)
    assert "external_data" not in loaded.sdfg.arrays["w1"].location
    assert "external_data" not in graph.sdfg.arrays["w1"].location and "w1" in graph.constants


def test_copy_shares_constants_and_is_independent(helpers):
    graph = import_model(helpers.load_example("mlp").build_model())
    clone = graph.copy()
    assert clone.constant("w1") is graph.constant("w1")
    clone.remove_op(clone.op_nodes()[-1])
    assert len(graph.op_nodes()) == 5 and len(clone.op_nodes()) == 4
