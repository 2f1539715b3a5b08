"""fallback="reference": nodes sdflow has no op for run through ONNX Runtime between compiled parts; each is
named. The default stays an error."""
from __future__ import annotations

import numpy as np
import pytest
from onnx import helper

import sdflow
from sdflow.cli import main as cli_main
from sdflow.ort import run_onnxruntime

pytestmark = pytest.mark.compiled
F = np.float32


@pytest.fixture
def model(helpers, rng):
    # MatMul -> Reshape -> DFT (unsupported) -> ReduceSum -> Relu; the last part also reads x for a Shape nobody
    # uses, so after dead-node elimination x is an input that part does not read.
    nodes = [helper.make_node("MatMul", ["x", "w"], ["m"]), helper.make_node("Reshape", ["m", "signal"], ["r"]),
             helper.make_node("DFT", ["r"], ["f"], name="transform"),
             helper.make_node("ReduceSum", ["f", "axes"], ["d"], keepdims=0),
             helper.make_node("Shape", ["x"], ["s"]), helper.make_node("Relu", ["d"], ["y"])]
    return helpers.make_model(nodes, [("x", F, ["n", 4])], [("y", F, ["n"])],
                              {"w": rng.standard_normal((4, 4)).astype(F), "signal": np.array([-1, 4, 1], np.int64),
                               "axes": np.array([1, 2], np.int64)})


def test_default_is_an_error_naming_the_node(model):
    with pytest.raises(sdflow.UnsupportedOpError, match="DFT.*transform"):
        sdflow.compile(model)


def test_reference_fallback_matches_onnxruntime_and_names_the_node(model, rng):
    compiled = sdflow.compile(model, fallback="reference")
    assert isinstance(compiled, sdflow.PartitionedModel)
    assert compiled.fallback_nodes == ["transform (ai.onnx::DFT)"] and compiled.host_nodes == []
    assert [p.kind for p in compiled.parts] == ["compiled", "reference", "compiled"]
    for n in (2, 5):
        x = rng.standard_normal((n, 4)).astype(F)
        (expected, ) = run_onnxruntime(model, {"x": x}).values()
        np.testing.assert_allclose(compiled(x)[0], expected, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(compiled(x=x)["y"], expected, rtol=1e-5, atol=1e-6)


def test_a_supported_model_is_compiled_whole(helpers):
    model = helpers.make_model([helper.make_node("Relu", ["x"], ["y"])], [("x", F, [3])], [("y", F, [3])])
    assert isinstance(sdflow.compile(model, fallback="reference"), sdflow.CompiledModel)


def test_cli_names_the_fallback_nodes(model, tmp_path, capsys):
    import onnx
    path = tmp_path / "m.onnx"
    onnx.save(model, path)
    assert cli_main(["compile", str(path), "--fallback", "reference"]) == 0
    assert "transform (ai.onnx::DFT)" in capsys.readouterr().out
    assert cli_main(["inspect", str(path)]) == 0
    assert "with --fallback reference, ONNX Runtime runs these 1 node(s)" in capsys.readouterr().out
    assert cli_main(["run", str(path), "--fallback", "reference", "--random", "--dim", "n=3", "--compare-ort"]) == 0


def test_an_unsupported_op_inside_a_branch_falls_back_with_its_outer_values(helpers, rng):
    """DFT inside an If branch: the If node runs in ONNX Runtime, fed the outer tensors its branches read (r, which
    is not one of the node's inputs), between two compiled parts."""
    square = helper.make_tensor_value_info
    then = helper.make_graph([helper.make_node("DFT", ["r"], ["f"], name="transform"),
                              helper.make_node("ReduceSum", ["f", "axes"], ["det"], keepdims=0)], "then", [],
                             [square("det", 1, ["n"])])
    other = helper.make_graph([helper.make_node("ReduceSum", ["r", "axes"], ["total"], keepdims=0)], "else", [],
                              [square("total", 1, ["n"])])
    nodes = [helper.make_node("MatMul", ["x", "w"], ["m"]), helper.make_node("Reshape", ["m", "square"], ["r"]),
             helper.make_node("ReduceSum", ["x"], ["s"], keepdims=0), helper.make_node("Greater", ["s", "zero"], ["c"]),
             helper.make_node("If", ["c"], ["d"], then_branch=then, else_branch=other, name="branch"),
             helper.make_node("Relu", ["d"], ["y"])]
    model = helpers.make_model(nodes, [("x", F, ["n", 4])], [("y", F, ["n"])],
                               {"w": rng.standard_normal((4, 4)).astype(F), "square": np.array([-1, 4, 1], np.int64),
                                "zero": np.array(0, F), "axes": np.array([1, 2], np.int64)})
    with pytest.raises(sdflow.UnsupportedOpError, match="DFT.*transform"):
        sdflow.compile(model)
    compiled = sdflow.compile(model, fallback="reference")
    assert compiled.fallback_nodes == ["branch (ai.onnx::If)"]
    for sign in (1, -1):
        x = (rng.standard_normal((3, 4)) + 2 * sign).astype(F)
        (expected, ) = run_onnxruntime(model, {"x": x}).values()
        np.testing.assert_allclose(compiled(x)[0], expected, rtol=1e-5, atol=1e-6)
