"""fuse-matmul-integer: the products of ONNX Runtime's ``quantize_dynamic`` (DynamicQuantizeLinear, MatMulInteger,
Cast, Mul by the scales) become sdflow's QuantizedMatMul with per-tensor activations, in O2; the compiled model
computes what the imported ops define (O1 runs them op by op through quant.h) and stays within quantization
noise of ONNX Runtime running the same file; patterns it cannot express are left alone."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnxruntime.quantization import QuantType, quantize_dynamic

import sdflow
from sdflow.frontends.onnx import import_model
from sdflow.ort import run_onnxruntime
from sdflow.passes import PassContext, run_pipeline

F = np.float32


def _quantized(helpers, rng, tmp_path, weight_type, per_channel):
    source, out = tmp_path / "ffn.onnx", tmp_path / "ffn_int8.onnx"
    onnx.save(helpers.ffn_model(rng, 64, 96), source)
    quantize_dynamic(str(source), str(out), weight_type=weight_type, per_channel=per_channel)
    return onnx.load(out)


def _kernels(graph):
    return [getattr(n, "kernel", "") or n.op_type for n in graph.op_nodes()]


@pytest.mark.parametrize("per_channel", [False, True])
def test_onnxruntime_dynamic_products_run_as_int8_kernels(helpers, rng, tmp_path, per_channel):
    model = _quantized(helpers, rng, tmp_path, QuantType.QInt8, per_channel)
    assert sum(n.op_type == "MatMulInteger" for n in model.graph.node) == 2
    graph = import_model(model)
    result = run_pipeline(graph, "O2", ctx=PassContext(explain=True))
    kernels = _kernels(graph)
    assert "MatMulInteger" not in kernels and "DynamicQuantizeLinear" not in kernels, kernels
    assert kernels == ["QuantizedMatMul+Add+Relu", "QuantizedMatMul+Add"], kernels
    assert any(r.name == "fuse-matmul-integer" and r.result.stats["fused_products"] == 2 for r in result)
    feeds = {"x": rng.standard_normal((2, 13, 64)).astype(F)}
    fused = sdflow.compile(model, passes="O2")(**feeds)[0]
    op_by_op = sdflow.compile(model, passes="O1")(**feeds)[0]  # DynamicQuantizeLinear + MatMulInteger (quant.h)
    np.testing.assert_allclose(fused, op_by_op, rtol=1e-5, atol=1e-5)
    expected = run_onnxruntime(model, feeds)["y"]
    # ONNX Runtime rounds x / scale its own way: a code may differ by one step, no more.
    assert float(np.abs(fused - expected).max()) < 0.05 * float(np.abs(expected).max())


def test_a_weight_zero_point_outside_int8_is_left_alone(helpers, rng, tmp_path):
    """Asymmetric uint8 weights (QuantType.QUInt8: codes over 0..255 around a zero point near 128) do not fit int8
    once the zero point is taken out: MatMulInteger stays, with a note why, and the result stays right."""
    model = _quantized(helpers, rng, tmp_path, QuantType.QUInt8, False)
    graph = import_model(model)
    result = run_pipeline(graph, "O2", ctx=PassContext(explain=True))
    assert _kernels(graph).count("MatMulInteger") == 2
    notes = [n for r in result if r.name == "fuse-matmul-integer" for n in r.result.notes]
    assert len(notes) == 2 and all("does not fit int8" in n for n in notes), notes
    feeds = {"x": rng.standard_normal((1, 3, 64)).astype(F)}
    expected = run_onnxruntime(model, feeds)["y"]
    got = sdflow.compile(model, passes="O2")(**feeds)[0]
    assert float(np.abs(got - expected).max()) < 0.05 * float(np.abs(expected).max())
