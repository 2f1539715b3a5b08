"""Shape-like inputs (a Squeeze's axes, a Split's sizes, a reduction's axes) fed by graph inputs: unknown at
compile time, so the import fails naming the node — never a silent default — unless the model is compiled with
value_inputs="specialize", which builds once per distinct value. Found by the ONNX conformance suite."""
from __future__ import annotations

import numpy as np
import pytest
from onnx import helper

import sdflow
from sdflow.codegen.build import native_builds
from sdflow.ir import ShapeInferenceError
from sdflow.ort import run_onnxruntime

F, I = np.float32, np.int64


def _squeeze(helpers):
    return helpers.make_model([helper.make_node("Squeeze", ["x", "axes"], ["y"])],
                              [("x", F, [1, 3, 1, 5]), ("axes", I, [1])], [("y", F, ["d0", "d1", "d2"])])


def _split(helpers):
    return helpers.make_model([helper.make_node("Split", ["x", "sizes"], ["a", "b"], axis=0)],
                              [("x", F, [6]), ("sizes", I, [2])], [("a", F, ["s0"]), ("b", F, ["s1"])])


@pytest.mark.parametrize("build", [_squeeze, _split])
def test_a_given_but_unknown_shape_input_is_an_error_not_a_default(helpers, build):
    with pytest.raises(ShapeInferenceError, match="must be known at compile time.*value_inputs='specialize'"):
        sdflow.load(build(helpers))


@pytest.mark.compiled
def test_specialize_builds_once_per_value_and_matches_onnxruntime(helpers, rng):
    model = _squeeze(helpers)
    compiled = sdflow.compile(model, value_inputs="specialize")
    assert isinstance(compiled, sdflow.ValueSpecializedModel) and compiled.value_inputs == ["axes"]
    x = rng.standard_normal((1, 3, 1, 5)).astype(F)
    for axes in ([-2], [0], [-2]):
        feeds = {"x": x, "axes": np.array(axes, I)}
        (expected, ) = run_onnxruntime(model, feeds).values()
        (got, ) = compiled(**feeds)
        np.testing.assert_array_equal(got, expected)
    assert len(compiled.builds) == 2  # [-2] twice: one build
    before = native_builds()
    compiled(x, np.array([0], I))
    assert native_builds() == before


@pytest.mark.compiled
def test_specialized_split_sizes(helpers, rng):
    model = _split(helpers)
    compiled = sdflow.compile(model, value_inputs="specialize")
    feeds = {"x": rng.standard_normal(6).astype(F), "sizes": np.array([2, 4], I)}
    got = compiled(**feeds)
    for name, expected in run_onnxruntime(model, feeds).items():
        np.testing.assert_array_equal(got[name], expected)


@pytest.mark.compiled
def test_reduce_max_over_an_empty_axis_is_minus_infinity(helpers):
    model = helpers.make_model([helper.make_node("ReduceMax", ["x"], ["y"], axes=[1], keepdims=1)],
                               [("x", F, [2, 0, 4])], [("y", F, [2, 1, 4])], opset=13)
    (got, ) = sdflow.compile(model)(np.zeros((2, 0, 4), F))
    assert got.shape == (2, 1, 4) and np.all(got == -np.inf)


@pytest.mark.compiled
def test_tensors_named_like_cpp_alternative_tokens(helpers, rng):
    model = helpers.make_model([helper.make_node("Xor", ["and", "or"], ["xor"])],
                               [("and", np.bool_, [4]), ("or", np.bool_, [4])], [("xor", np.bool_, [4])])
    a, b = rng.integers(0, 2, 4).astype(bool), rng.integers(0, 2, 4).astype(bool)
    np.testing.assert_array_equal(sdflow.compile(model)(a, b)[0], a ^ b)
