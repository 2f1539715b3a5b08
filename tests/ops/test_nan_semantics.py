"""NaN and inf are values like any other: compiled ops give what ONNX Runtime gives for them (NaN through Relu,
Max/Min, Sign, HardSigmoid, Celu, Clip, ...), max-like reductions and pooling propagate a NaN (numpy's np.max; ONNX
Runtime's own answer there depends on where the NaN falls in its vector lanes, and is NaN when it comes first),
and --compare-ort's comparison calls NaN = NaN and inf = inf a match."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

import sdflow
from sdflow.ort import compare_outputs, run_onnxruntime

NAN, INF = np.nan, np.inf
UNARY = [("Relu", {}), ("LeakyRelu", {}), ("Sigmoid", {}), ("Tanh", {}), ("Abs", {}), ("Neg", {}), ("Exp", {}),
         ("Sign", {}), ("Floor", {}), ("Round", {}), ("Elu", {}), ("Selu", {}), ("Celu", {}), ("HardSigmoid", {}),
         ("HardSwish", {}), ("Softplus", {}), ("Erf", {}), ("IsNaN", {}), ("IsInf", {}), ("Sqrt", {}),
         ("ThresholdedRelu", {}), ("Softsign", {}), ("Softmax", {"axis": -1}), ("ReduceSumSquare", {"axes": [1]})]
BINARY = ["Max", "Min", "Add", "Mul", "Div", "PRelu", "Pow"]


def _model():
    nodes, outputs = [], []
    for k, (op, attrs) in enumerate(UNARY):
        nodes.append(helper.make_node(op, ["x"], [f"u{k}_{op}"], **attrs))
        outputs.append(f"u{k}_{op}")
    for k, op in enumerate(BINARY):
        nodes.append(helper.make_node(op, ["x", "z"], [f"b{k}_{op}"]))
        outputs.append(f"b{k}_{op}")
    nodes.append(helper.make_node("Clip", ["x", "low", "high"], ["clip"]))
    # ONNX Runtime propagates a NaN in the first position of a row (the issue's [NaN, ..., inf] case).
    nodes.append(helper.make_node("ReduceMax", ["x"], ["reduce_max"], axes=[1], keepdims=0))
    nodes.append(helper.make_node("ReduceMin", ["x"], ["reduce_min"], axes=[1], keepdims=0))
    outputs += ["clip", "reduce_max", "reduce_min"]
    graph = helper.make_graph(
        nodes, "nan", [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["n", 8]) for n in ("x", "z")], [],
        [helper.make_tensor("low", TensorProto.FLOAT, [], [-1.0]), helper.make_tensor("high", TensorProto.FLOAT, [], [1.0])])
    model = onnx.shape_inference.infer_shapes(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]))
    infos = {v.name: v for v in model.graph.value_info}
    model.graph.output.extend(infos[name] for name in outputs)
    del model.graph.value_info[:]
    return model


X = np.array([[NAN, 1, -2, INF, -INF, 0.5, 3, -1], [NAN, -INF, INF, 2, 1, 0, -3, 4],
              [-INF] * 8, [0.5, -0.5, 2, -2, 0, 7, -7, 1]], np.float32)
Z = np.array([[1, NAN, 0, -INF, NAN, 2, INF, -5]] * 4, np.float32)


@pytest.mark.compiled
@pytest.mark.parametrize("passes", ["O0", "O2"])
def test_nan_and_inf_match_onnxruntime(passes):
    model = _model()
    got = sdflow.compile(model, passes=passes)(x=X, z=Z).as_dict()
    reference = run_onnxruntime(model, {"x": X, "z": Z})
    assert np.isnan(reference["u0_Relu"][0, 0]) and np.isnan(reference["reduce_max"][0])
    for comparison in compare_outputs(got, reference, 1e-5):
        assert comparison.ok, str(comparison)


@pytest.mark.compiled
def test_max_like_pooling_and_reductions_propagate_nan():
    nodes = [helper.make_node("MaxPool", ["x"], ["pool"], kernel_shape=[2, 2]),
             helper.make_node("MaxPool", ["x"], ["pool_strided"], kernel_shape=[3, 3], strides=[2, 2]),
             helper.make_node("GlobalMaxPool", ["x"], ["global_pool"]),
             helper.make_node("ReduceMax", ["x"], ["reduce_max"], axes=[2, 3], keepdims=0)]
    graph = helper.make_graph(nodes, "pool", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 7, 7])],
                              [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in
                               ("pool", "pool_strided", "global_pool", "reduce_max")])
    compiled = sdflow.compile(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]))
    x = np.random.default_rng(0).standard_normal((1, 2, 7, 7)).astype(np.float32)
    x[0, 0, 3, 4], x[0, 0, 0, 0], x[0, 1, 5, 5] = NAN, INF, -INF
    pool, pool_strided, global_pool, reduce_max = compiled(x)
    windows = np.lib.stride_tricks.sliding_window_view(x, (2, 2), axis=(2, 3))
    np.testing.assert_array_equal(pool, windows.max(axis=(-2, -1)))
    strided = np.lib.stride_tricks.sliding_window_view(x, (3, 3), axis=(2, 3))[:, :, ::2, ::2].max(axis=(-2, -1))
    np.testing.assert_array_equal(pool_strided, strided)
    assert np.isnan(pool).sum() == 4 and np.isnan(strided).sum() == 2
    np.testing.assert_array_equal(global_pool.ravel(), x.max(axis=(2, 3)).ravel())
    np.testing.assert_array_equal(reduce_max, x.max(axis=(2, 3)))
    assert np.isnan(reduce_max[0, 0]) and not np.isnan(reduce_max[0, 1])


def test_comparison_treats_nan_and_inf_as_values():
    reference = {"y": np.array([NAN, INF, -INF, 1.0], np.float32)}
    assert compare_outputs({"y": reference["y"].copy()}, reference)[0].ok
    for wrong in ([0.0, INF, -INF, 1], [NAN, -INF, -INF, 1], [NAN, INF, INF, 1], [NAN, INF, -INF, NAN]):
        comparison = compare_outputs({"y": np.array(wrong, np.float32)}, reference)[0]
        assert not comparison.ok and comparison.max_abs_error == INF
    assert compare_outputs({"y": np.array([NAN, INF, -INF, 1.00001])}, reference)[0].ok
