"""MatMulInteger and ConvInteger (what ONNX Runtime's quantize_dynamic writes) exact against ONNX Runtime, and a
dynamically quantized Conv + MatMul model made by ONNX Runtime's own quantizer matching it at two batch sizes."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import sdflow
from sdflow.ir import interpret
from sdflow.ort import compare_outputs, run_onnxruntime


def _onnxruntime_int8_is_exact() -> bool:
    """Whether ONNX Runtime's uint8 x int8 products are exact on this CPU: MLAS multiplies with VNNI where the CPU
    has it; without (AVX2, AVX-512BW alone) it sums pairs of products in int16 with vpmaddubsw, which saturates
    for full-range int8 weights (its documented reason for reduce_range), so its integers then differ."""
    try:
        flags = open("/proc/cpuinfo").read()
    except OSError:
        return False
    return "avx512_vnni" in flags or "avx_vnni" in flags


def _reference(model, feeds):
    """The outputs as the ops' numpy references compute them (ONNX's definitions, exact integers)."""
    return interpret(sdflow.load(model), feeds)

pytestmark = pytest.mark.compiled
RNG = np.random.default_rng(3)


def _integers(dtype, shape):
    info = np.iinfo(dtype)
    return RNG.integers(info.min, info.max + 1, shape).astype(dtype)


@pytest.mark.parametrize("a_type, b_type", [(np.uint8, np.uint8), (np.uint8, np.int8), (np.int8, np.int8)])
def test_matmul_integer_is_exact(helpers, a_type, b_type):
    """A batched 3-D A, a zero point for A and one per column of B (ONNX Runtime takes only a scalar for A)."""
    model = helpers.make_model(
        [helper.make_node("MatMulInteger", ["a", "b", "a_zero", "b_zero"], ["y"])],
        [("a", a_type, ["n", 5, 33])], [("y", np.int32, ["n", 5, 7])],
        {"b": _integers(b_type, (33, 7)), "a_zero": _integers(a_type, ()), "b_zero": _integers(b_type, (7, ))})
    compiled = sdflow.compile(model)
    b, a_zero, b_zero = (numpy_helper.to_array(i) for i in model.graph.initializer)
    for n in (1, 3):
        a = _integers(a_type, (n, 5, 33))
        exact = (a.astype(np.int64) - a_zero) @ (b.astype(np.int64) - b_zero)
        np.testing.assert_array_equal(compiled(a)[0], exact)
        if (a_type, b_type) != (np.uint8, np.int8):
            # ONNX Runtime's uint8 x int8 kernel saturates pairs of products in int16 (pmaddubsw) on this CPU.
            np.testing.assert_array_equal(compiled(a)[0], run_onnxruntime(model, {"a": a})["y"])


@pytest.mark.parametrize("attrs, out", [(dict(pads=[1, 1, 1, 1]), [9, 8]),
                                        (dict(strides=[2, 1], dilations=[1, 2], group=2), [4, 4]),
                                        (dict(auto_pad="SAME_UPPER"), [9, 8])], ids=["padded", "strided-dilated-grouped", "same"])
def test_conv_integer_is_exact(helpers, attrs, out):
    group = attrs.get("group", 1)
    model = helpers.make_model(
        [helper.make_node("ConvInteger", ["x", "w", "x_zero", "w_zero"], ["y"], kernel_shape=[3, 3], **attrs)],
        [("x", np.uint8, ["n", 4, 9, 8])], [("y", np.int32, ["n", 6] + out)],
        {"w": _integers(np.uint8, (6, 4 // group, 3, 3)), "x_zero": np.array(121, np.uint8),
         "w_zero": np.array(7, np.uint8)})
    compiled = sdflow.compile(model)
    for n in (1, 2):
        x = _integers(np.uint8, (n, 4, 9, 8))
        np.testing.assert_array_equal(compiled(x)[0], run_onnxruntime(model, {"x": x})["y"])


def test_onnxruntime_dynamic_quantization_runs_natively(tmp_path):
    from onnxruntime.quantization import QuantType, quantize_dynamic
    weights = {"conv_w": RNG.standard_normal((8, 3, 3, 3)) / 3, "conv_b": RNG.standard_normal(8) / 3,
               "w": RNG.standard_normal((8 * 6 * 6, 16)) / 10, "b": RNG.standard_normal(16)}
    nodes = [helper.make_node("Conv", ["x", "conv_w", "conv_b"], ["c"], pads=[1, 1, 1, 1], strides=[2, 2]),
             helper.make_node("Relu", ["c"], ["r"]), helper.make_node("Flatten", ["r"], ["f"]),
             helper.make_node("MatMul", ["f", "w"], ["m"]), helper.make_node("Add", ["m", "b"], ["y"])]
    graph = helper.make_graph(nodes, "float", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3, 12, 12])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 16])],
                              [numpy_helper.from_array(v.astype(np.float32), k) for k, v in weights.items()])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), tmp_path / "float.onnx")
    for weight_type in (QuantType.QUInt8, QuantType.QInt8):
        quantize_dynamic(tmp_path / "float.onnx", tmp_path / "dynamic.onnx", weight_type=weight_type)
        model = onnx.load(tmp_path / "dynamic.onnx")
        assert {"ConvInteger", "MatMulInteger", "DynamicQuantizeLinear"} <= {n.op_type for n in model.graph.node}
        compiled = sdflow.compile(model)
        for n in (1, 3):
            x = RNG.standard_normal((n, 3, 12, 12)).astype(np.float32)
            for comparison in compare_outputs(compiled(x).as_dict(), run_onnxruntime(model, {"x": x}), 1e-5):
                assert comparison.ok, str(comparison)


def test_qlinear_conv_and_matmul_are_exact_against_onnxruntime(helpers):
    """QLinearConv (per-channel int8 weights, int32 bias) -> QLinearMatMul, as ONNX Runtime's static quantizer
    writes them in its QOperator layout: sdflow rewrites each into ConvInteger / MatMulInteger, the float
    requantization multiplier and a QuantizeLinear; every output integer equals ONNX Runtime's."""
    channels = 6
    weights = {"w": _integers(np.int8, (channels, 3, 3, 3)),
               "w_scale": (RNG.random(channels) / 50 + 1e-3).astype(np.float32),
               "w_zero": np.zeros(channels, np.int8), "bias": RNG.integers(-500, 500, channels).astype(np.int32),
               "x_scale": np.float32(0.02), "x_zero": np.uint8(128), "y_scale": np.float32(0.05),
               "y_zero": np.uint8(100), "m": _integers(np.int8, (8 * 8, 5)), "m_scale": np.float32(0.01),
               "m_zero": np.int8(0), "z_scale": np.float32(0.2), "z_zero": np.uint8(90),
               "shape": np.array([-1, channels, 64], np.int64)}
    nodes = [helper.make_node("QLinearConv", ["x", "x_scale", "x_zero", "w", "w_scale", "w_zero", "y_scale", "y_zero",
                                              "bias"], ["y"], pads=[1, 1, 1, 1]),
             helper.make_node("Reshape", ["y", "shape"], ["rows"]),
             helper.make_node("QLinearMatMul", ["rows", "y_scale", "y_zero", "m", "m_scale", "m_zero", "z_scale",
                                                "z_zero"], ["z"])]
    model = helpers.make_model(nodes, [("x", np.uint8, ["n", 3, 8, 8])],
                               [("y", np.uint8, ["n", channels, 8, 8]), ("z", np.uint8, ["n", channels, 5])], weights)
    graph = sdflow.load(model)
    assert {"ConvInteger", "MatMulInteger", "QuantizeLinear"} <= {n.op_type for n in graph.op_nodes()}
    compiled = sdflow.compile(model)
    for n in (1, 2):
        x = _integers(np.uint8, (n, 3, 8, 8))
        expected = run_onnxruntime(model, {"x": x}) if _onnxruntime_int8_is_exact() else _reference(model, {"x": x})
        outputs = compiled(x)
        np.testing.assert_array_equal(outputs["y"], expected["y"])
        np.testing.assert_array_equal(outputs["z"], expected["z"])
        assert len(np.unique(outputs["z"])) > 10  # not saturated to one value


def test_onnxruntime_static_quantization_runs_natively(tmp_path):
    """ONNX Runtime's static quantizer (QOperator layout) on a model of Conv, a residual Add, GlobalAveragePool,
    Gemm, and an attention-like MatMul of two activations, Mul and Softmax: it writes QLinearConv, QLinearMatMul
    and com.microsoft's QLinearAdd, QLinearGlobalAveragePool, QGemm, QLinearMul, QLinearSoftmax. sdflow's outputs
    (dequantized) are within one quantization step of ONNX Runtime's, at two batch sizes (MLAS's vector code may
    round a value halfway between two steps the other way). On a CPU without VNNI, ONNX Runtime's own integer
    products saturate (see _onnxruntime_int8_is_exact): there the numpy references of the imported ops stand in."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    weights = {"conv_w": RNG.standard_normal((8, 8, 3, 3)) / 6, "conv_b": RNG.standard_normal(8) / 3,
               "fc_w": RNG.standard_normal((16, 8)) / 3, "fc_b": RNG.standard_normal(16) / 3,
               "half": np.array(0.5)}
    nodes = [helper.make_node("Conv", ["x", "conv_w", "conv_b"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("Add", ["c", "x"], ["residual"]),
             helper.make_node("GlobalAveragePool", ["residual"], ["pooled"]),
             helper.make_node("Flatten", ["pooled"], ["flat"]),
             helper.make_node("Gemm", ["flat", "fc_w", "fc_b"], ["logits"], transB=1),
             helper.make_node("Reshape", ["residual", "rows_shape"], ["rows"]),
             helper.make_node("Transpose", ["rows"], ["columns"], perm=[0, 2, 1]),
             helper.make_node("MatMul", ["rows", "columns"], ["scores"]),
             helper.make_node("Mul", ["scores", "half"], ["scaled"]),
             helper.make_node("Softmax", ["scaled"], ["attention"], axis=-1)]
    weights["rows_shape"] = np.array([0, 8, 36], np.int64)
    graph = helper.make_graph(nodes, "float", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 8, 6, 6])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["n", 16]),
                               helper.make_tensor_value_info("attention", TensorProto.FLOAT, ["n", 8, 8])],
                              [numpy_helper.from_array(np.asarray(v, np.float32 if k != "rows_shape" else np.int64),
                                                       k) for k, v in weights.items()])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), tmp_path / "float.onnx")

    class Batches(CalibrationDataReader):
        def __init__(self):
            self.feeds = iter([{"x": RNG.standard_normal((2, 8, 6, 6)).astype(np.float32)} for _ in range(4)])

        def get_next(self):
            return next(self.feeds, None)

    quantize_static(tmp_path / "float.onnx", tmp_path / "static.onnx", Batches(), quant_format=QuantFormat.QOperator,
                    per_channel=True, weight_type=QuantType.QInt8, activation_type=QuantType.QUInt8)
    model = onnx.load(tmp_path / "static.onnx")
    written = {(n.domain, n.op_type) for n in model.graph.node}
    assert {("", "QLinearConv"), ("", "QLinearMatMul"), ("com.microsoft", "QLinearAdd"), ("com.microsoft", "QGemm"),
            ("com.microsoft", "QLinearGlobalAveragePool"), ("com.microsoft", "QLinearMul"),
            ("com.microsoft", "QLinearSoftmax")} <= written, written
    compiled = sdflow.compile(model)
    for n in (1, 3):
        x = RNG.standard_normal((n, 8, 6, 6)).astype(np.float32)
        expected = run_onnxruntime(model, {"x": x}) if _onnxruntime_int8_is_exact() else _reference(model, {"x": x})
        for name, value in compiled(x).as_dict().items():
            scale = float(numpy_helper.to_array(next(i for i in model.graph.initializer
                                                     if i.name == f"{name}_scale")))
            assert np.abs(value - expected[name]).max() <= scale * 1.001, name  # at most one step apart
            assert np.abs(expected[name]).max() > 10 * scale


def test_a_qlinear_softmax_of_the_old_flattening_form_is_refused_naming_the_node(helpers):
    """QLinearSoftmax with opset 11 semantics over a middle axis (softmax over the flattened trailing dims) is not
    the Softmax-13 sdflow rewrites it into: refused, not approximated."""
    node = helper.make_node("QLinearSoftmax", ["x", "scale", "zero", "scale", "zero"], ["y"], domain="com.microsoft",
                            axis=1, opset=11, name="old_softmax")
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.UINT8, [2, 3, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.UINT8, [2, 3, 4])],
                              [numpy_helper.from_array(np.array(0.1, np.float32), "scale"),
                               numpy_helper.from_array(np.array(128, np.uint8), "zero")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17),
                                                    helper.make_opsetid("com.microsoft", 1)])
    with pytest.raises(sdflow.ShapeInferenceError, match="old_softmax.*QLinearSoftmax.*not supported"):
        sdflow.load(model)
