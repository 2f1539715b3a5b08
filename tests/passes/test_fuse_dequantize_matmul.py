"""4-bit weights in their products' kernels (fuse-dequantize-matmul, codegen/kernels/nbits.h): quantize-weights'
3/4-bit weights before or after O2, QDQ files and ONNX Runtime's MatMulNBits models (with and without zero points,
with a bias) compile to one fused kernel per product that computes what the graph's numpy references compute, at
one row (the GEMV form) and many; fold-constants keeps 4-bit weights quantized; a cached build packs the weight
again from its constants."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import sdflow
from sdflow.frontends.onnx import import_model
from sdflow.ir import interpret
from sdflow.ort import run_onnxruntime
from sdflow.passes import PassContext, run_pipeline

F = np.float32


def _ffn(helpers, rng, k=96, hidden=160):
    return helpers.ffn_model(rng, k, hidden)


def _kernels(graph):
    return [getattr(n, "kernel", "") or n.op_type for n in graph.op_nodes()]


def _check_compiled(model, passes, feeds_list):
    compiled = sdflow.compile(model, passes=passes)
    for feeds in feeds_list:
        ours = compiled(**feeds).as_dict()
        meant = interpret(compiled.graph, feeds)
        for name, value in ours.items():
            # (the one-row form sums code x activation per group first: float rounding of another order)
            np.testing.assert_allclose(value, meant[name], rtol=1e-4, atol=1e-4, err_msg=name)
    return compiled


@pytest.mark.parametrize("passes", ["O2,quantize-weights{bits=4,group_size=32,min_elements=0}",
                                    "quantize-weights{bits=4,group_size=64,min_elements=0},O2",
                                    "O2,quantize-weights{bits=3,group_size=-1,min_elements=0}",
                                    "quantize-weights{bits=3,group_size=32,min_elements=0},O2"])
def test_quantized_weights_run_in_the_products_kernels(helpers, rng, passes):
    model = _ffn(helpers, rng)
    feeds = [{"x": rng.standard_normal((1, 1, 96)).astype(F)}, {"x": rng.standard_normal((2, 13, 96)).astype(F)}]
    compiled = _check_compiled(model, passes, feeds)
    assert _kernels(compiled.graph) == ["DequantizeLinear+MatMul+Add+Relu", "DequantizeLinear+MatMul+Add"]
    width = 3 if "bits=3" in passes else 4  # 3-bit codes are packed in 3 bits (12 bytes per row of 32)
    assert any(f"__nbits_codes__packed{width}_g" in name for name in compiled.build_record.weights)
    expected = run_onnxruntime(model, feeds[1])["y"]
    relative = np.linalg.norm(compiled(**feeds[1])[0] - expected) / np.linalg.norm(expected)
    assert relative < (0.1 if "bits=4" in passes else 0.25)
    again = sdflow.compile(model, passes=passes)  # the cached build: the packed weight made again from constants
    np.testing.assert_array_equal(again(**feeds[1])[0], compiled(**feeds[1])[0])


def _matmul_nbits_model(rng, k, n, block, zeros: bool, bias: bool):
    """One com.microsoft MatMulNBits (4 bits) written by hand, as ONNX Runtime's quantizer lays it out."""
    blocks = -(-k // block)
    codes = rng.integers(0, 16, (n, blocks * block)).astype(np.uint8)
    blob = (codes[:, 0::2] | (codes[:, 1::2] << 4)).reshape(n, blocks, block // 2)
    inits = [numpy_helper.from_array(blob, "B"),
             numpy_helper.from_array((rng.random((n, blocks)) / 20 + 0.01).astype(F), "scales")]
    inputs = ["A", "B", "scales"]
    if zeros:
        zero = rng.integers(0, 16, (n, blocks + blocks % 2)).astype(np.uint8)
        inits.append(numpy_helper.from_array((zero[:, 0::2] | (zero[:, 1::2] << 4)).reshape(-1), "zeros"))
        inputs.append("zeros")
    if bias:
        inputs += [""] * (5 - len(inputs)) + ["bias"]
        inits.append(numpy_helper.from_array(rng.standard_normal(n).astype(F), "bias"))
    node = helper.make_node("MatMulNBits", inputs, ["Y"], domain="com.microsoft", K=k, N=n, bits=4, block_size=block)
    graph = helper.make_graph([node], "nbits", [helper.make_tensor_value_info("A", TensorProto.FLOAT, ["m", k])],
                              [helper.make_tensor_value_info("Y", TensorProto.FLOAT, ["m", n])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17),
                                                   helper.make_opsetid("com.microsoft", 1)])


@pytest.mark.parametrize("zeros, bias", [(True, False), (False, True)])
def test_onnxruntime_matmul_nbits_imports_into_the_4_bit_kernel(rng, zeros, bias):
    """Zero points packed two per byte, or absent (then 8, as ONNX Runtime reads them); K not a multiple of the
    block."""
    model = _matmul_nbits_model(rng, 200, 70, 32, zeros, bias)
    feeds = [{"A": rng.standard_normal((m, 200)).astype(F)} for m in (1, 9)]
    compiled = _check_compiled(model, "O2", feeds)
    assert _kernels(compiled.graph) == ["DequantizeLinear+MatMul" + ("+Add" if bias else "")]
    for f in feeds:
        np.testing.assert_allclose(compiled(**f)[0], run_onnxruntime(model, f)["Y"], rtol=1e-4, atol=1e-4)


def test_onnxruntime_quantizer_models_import(helpers, rng, tmp_path):
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer
    quantizer = MatMulNBitsQuantizer(_ffn(helpers, rng, k=128, hidden=256), block_size=32, is_symmetric=False)
    quantizer.process()
    path = tmp_path / "nbits.onnx"
    quantizer.model.save_model_to_file(str(path))
    assert sum(n.op_type == "MatMulNBits" for n in onnx.load(path).graph.node) == 2
    feeds = {"x": rng.standard_normal((2, 5, 128)).astype(F)}
    compiled = _check_compiled(path, "O2", [feeds])
    assert _kernels(compiled.graph) == ["DequantizeLinear+MatMul+Add+Relu", "DequantizeLinear+MatMul+Add"]
    np.testing.assert_allclose(compiled(**feeds)[0], run_onnxruntime(str(path), feeds)["y"], rtol=1e-4, atol=1e-4)


def test_fold_constants_keeps_4_bit_weights_and_folds_8_bit_ones(helpers, rng, tmp_path):
    """An imported QDQ file's 8-bit weights become float32 constants (O1 folds them before O2 could fuse them); its
    4-bit ones stay quantized into the products' kernels."""
    from sdflow.quantize import quantize_onnx
    for bits, kernels in ((8, ["MatMul+Add+Relu", "MatMul+Add"]),
                          (4, ["DequantizeLinear+MatMul+Add+Relu", "DequantizeLinear+MatMul+Add"])):
        path = tmp_path / f"q{bits}.onnx"
        quantize_onnx(_ffn(helpers, rng), f"quantize-weights{{bits={bits},group_size=32,min_elements=0}}", path)
        graph = import_model(str(path))
        run_pipeline(graph, "O2")
        assert _kernels(graph) == kernels


@pytest.mark.parametrize("passes", ["O2,quantize-weights{bits=8,group_size=-1,min_elements=0}",
                                    "quantize-weights{bits=8,group_size=32,min_elements=0},O2"])
def test_8_bit_weights_run_in_the_products_kernels(helpers, rng, passes):
    model = _ffn(helpers, rng)
    feeds = [{"x": rng.standard_normal((1, 1, 96)).astype(F)}, {"x": rng.standard_normal((2, 13, 96)).astype(F)}]
    compiled = _check_compiled(model, passes, feeds)
    assert _kernels(compiled.graph) == ["DequantizeLinear+MatMul+Add+Relu", "DequantizeLinear+MatMul+Add"]
    assert any("__nbits_codes__packed8_g" in name for name in compiled.build_record.weights)
    expected = run_onnxruntime(model, feeds[1])["y"]
    assert np.linalg.norm(compiled(**feeds[1])[0] - expected) / np.linalg.norm(expected) < 0.01


def test_a_weight_read_by_two_products_is_left_apart(helpers, rng):
    nodes = [helper.make_node("MatMul", ["x", "w"], ["a"]), helper.make_node("MatMul", ["x", "w"], ["b"]),
             helper.make_node("Add", ["a", "b"], ["y"])]
    model = helpers.make_model(nodes, [("x", F, [3, 64])], [("y", F, [3, 64])],
                               {"w": rng.standard_normal((64, 64)).astype(F)})
    graph = import_model(model)
    records = run_pipeline(graph, "quantize-weights{bits=4,group_size=32,min_elements=0},O2",
                           ctx=PassContext(explain=True))
    notes = [note for r in records for note in r.result.notes]
    assert any("read by several ops" in note for note in notes)
    feeds = {"x": rng.standard_normal((3, 64)).astype(F)}
    np.testing.assert_allclose(sdflow.compile(model, passes="quantize-weights{bits=4,group_size=32,min_elements=0},"
                                                            "O2")(**feeds)[0],
                               interpret(graph, feeds)["y"], rtol=1e-5, atol=1e-5)
