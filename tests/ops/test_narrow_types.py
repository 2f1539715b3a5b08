"""Element types narrower than 16 bits (float8 x5, float4, int4/uint4, int2/uint2) as stored, converted types, and
bfloat16 as a compute type: compiled conversions bit-exact against ONNX's reference Cast/QuantizeLinear/
DequantizeLinear, every code decoded, weights of these types through save/load, and arithmetic on a stored type
refused with the node named."""
from __future__ import annotations

import ml_dtypes
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnx.reference import ReferenceEvaluator

import sdflow
from sdflow.ir import Graph, ShapeInferenceError

pytestmark = pytest.mark.compiled

NARROW = ["FLOAT8E4M3FN", "FLOAT8E4M3FNUZ", "FLOAT8E5M2", "FLOAT8E5M2FNUZ", "FLOAT8E8M0", "FLOAT4E2M1", "INT4",
          "UINT4", "INT2", "UINT2"]


def _values() -> np.ndarray:
    rng = np.random.default_rng(5)
    spread = np.concatenate([rng.standard_normal(400).astype(np.float32) * s for s in (1e-3, 1, 30, 500, 1e5)])
    special = np.array([0, -0.0, np.inf, -np.inf, np.nan, 448, 464, 480, 240, 57344, 61440, 6, 7, 1e-9, -8, 15, 2.5,
                        -2.5, 3.5, 1.5], np.float32)
    return np.concatenate([spread, special])


def _model(nodes, inputs, outputs, opset=23):
    graph = helper.make_graph(nodes, "narrow", [helper.make_tensor_value_info(n, t, s) for n, t, s in inputs],
                              [helper.make_tensor_value_info(n, t, s) for n, t, s in outputs])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def _bits(array: np.ndarray) -> np.ndarray:
    return array.view(f"uint{8 * array.dtype.itemsize}")


def test_cast_to_and_from_every_narrow_type_is_bit_exact():
    x = _values()
    nodes, outputs = [], []
    for name in NARROW:
        for saturate in (1, 0):
            to = getattr(TensorProto, name)
            nodes += [helper.make_node("Cast", ["x"], [f"{name}_{saturate}"], to=to, saturate=saturate),
                      helper.make_node("Cast", [f"{name}_{saturate}"], [f"{name}_{saturate}_f"], to=TensorProto.FLOAT)]
            outputs += [(f"{name}_{saturate}", to, [x.size]), (f"{name}_{saturate}_f", TensorProto.FLOAT, [x.size])]
    model = _model(nodes, [("x", TensorProto.FLOAT, [x.size])], outputs)
    got = sdflow.compile(model, passes="")(x)
    with np.errstate(all="ignore"):
        want = ReferenceEvaluator(model).run(None, {"x": x})
    for (name, _, _), g, w in zip(outputs, got, want):
        assert g.dtype == w.dtype, name
        if name.endswith("_f"):
            np.testing.assert_array_equal(g, w, err_msg=name)  # NaN equals NaN here
        else:
            np.testing.assert_array_equal(_bits(g), _bits(w), err_msg=name)


def test_every_code_decodes_as_ml_dtypes_does():
    inputs, nodes, outputs, feeds = [], [], [], {}
    for name in NARROW:
        dtype = np.dtype(helper.tensor_dtype_to_np_dtype(getattr(TensorProto, name)))
        bits = int(name[-1]) if name.startswith(("INT", "UINT")) else (4 if name == "FLOAT4E2M1" else 8)
        feeds[name] = np.arange(2 ** bits, dtype=np.uint8).view(dtype)
        inputs.append((name, getattr(TensorProto, name), [2 ** bits]))
        nodes += [helper.make_node("Cast", [name], [f"{name}_f"], to=TensorProto.FLOAT),
                  helper.make_node("Cast", [name], [f"{name}_i"], to=TensorProto.INT32)]
        outputs += [(f"{name}_f", TensorProto.FLOAT, [2 ** bits])]
    model = _model(nodes, inputs, outputs)
    got = sdflow.compile(model, passes="")(**feeds)
    for name, g in zip(NARROW, got):
        np.testing.assert_array_equal(g, feeds[name].astype(np.float32), err_msg=name)


def test_blocked_int4_weights_and_float8_activations_match_onnx_reference(tmp_path):
    """A weight-only int4 MatMul as ONNX writes it at opset 21 (DequantizeLinear with block_size and int4 zero
    points), an activation quantized to float8 and back: weights stored as bytes survive Graph save/load."""
    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.integers(-8, 8, (64, 16)).astype(ml_dtypes.int4), "w")
    scale = numpy_helper.from_array(rng.uniform(0.01, 0.1, (2, 16)).astype(np.float32), "scale")
    zero = numpy_helper.from_array(rng.integers(-2, 3, (2, 16)).astype(ml_dtypes.int4), "zero")
    nodes = [helper.make_node("DequantizeLinear", ["w", "scale", "zero"], ["wf"], axis=0, block_size=32),
             helper.make_node("QuantizeLinear", ["x", "xs"], ["x8"], output_dtype=TensorProto.FLOAT8E4M3FN),
             helper.make_node("DequantizeLinear", ["x8", "xs"], ["xq"]),
             helper.make_node("MatMul", ["xq", "wf"], ["y"]),
             helper.make_node("QuantizeLinear", ["y", "ys", "yz"], ["y4"], saturate=1)]
    graph = helper.make_graph(nodes, "w4", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 64])],
                              [helper.make_tensor_value_info("y4", TensorProto.UINT4, ["n", 16])],
                              [w, scale, zero, numpy_helper.from_array(np.array(0.05, np.float32), "xs"),
                               numpy_helper.from_array(np.array(0.2, np.float32), "ys"),
                               numpy_helper.from_array(np.array(7, ml_dtypes.uint4), "yz")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)])
    x = rng.standard_normal((3, 64)).astype(np.float32) * 4
    want = ReferenceEvaluator(model).run(None, {"x": x})[0]
    saved = tmp_path / "w4.sdfg"
    sdflow.load(model).save(saved)
    for source in (model, saved):
        got = sdflow.compile(source, passes="O2" if source is model else "")(x)[0]
        assert got.dtype == np.dtype(ml_dtypes.uint4)
        np.testing.assert_array_equal(_bits(got), _bits(want))
    assert Graph.load(saved).constant(next(n for n in Graph.load(saved).constants if "zero" in n)).dtype == \
        np.dtype(ml_dtypes.int4)


def test_arithmetic_on_a_stored_type_names_the_node():
    model = _model([helper.make_node("Add", ["a", "b"], ["c"], name="add_fp8")],
                   [("a", TensorProto.FLOAT8E4M3FN, [4]), ("b", TensorProto.FLOAT8E4M3FN, [4])],
                   [("c", TensorProto.FLOAT8E4M3FN, [4])])
    with pytest.raises(ShapeInferenceError, match=r"add_fp8.*f8e4m3fn tensors are stored, not computed on"):
        sdflow.compile(model)


def test_bfloat16_computes_like_float32_rounded_per_op():
    """Element-wise ops, a MatMul and a Softmax in bfloat16: within two bfloat16 steps of the float32 graph."""
    nodes = [helper.make_node("MatMul", ["a", "b"], ["m"]), helper.make_node("Tanh", ["m"], ["t"]),
             helper.make_node("Softmax", ["t"], ["s"], axis=-1), helper.make_node("Mul", ["s", "a"], ["y"])]
    rng = np.random.default_rng(1)
    a = rng.standard_normal((8, 8)).astype(np.float32)
    b = rng.standard_normal((8, 8)).astype(np.float32) * 0.3
    as_type = lambda t: _model(nodes, [("a", t, [8, 8]), ("b", t, [8, 8])], [("y", t, [8, 8])])  # noqa: E731
    exact = ReferenceEvaluator(as_type(TensorProto.FLOAT)).run(None, {"a": a, "b": b})[0]
    got = sdflow.compile(as_type(TensorProto.BFLOAT16))(a.astype(ml_dtypes.bfloat16), b.astype(ml_dtypes.bfloat16))[0]
    assert got.dtype == np.dtype(ml_dtypes.bfloat16)
    np.testing.assert_allclose(got.astype(np.float32), exact, rtol=2 ** -6, atol=2 ** -8)
