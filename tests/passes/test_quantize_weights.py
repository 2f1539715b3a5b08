"""quantize-weights: weights as blocked DequantizeLinear of 8/4/3-bit codes (RTN and GPTQ), the compiled model
against ONNX Runtime's float model, GPTQ below RTN on every layer of the trained MiniLM, calibration through the
API and the CLI, and the errors for bad options or missing calibration."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import onnx
import pytest
from onnx import helper

import sdflow
from sdflow.frontends.onnx import import_model
from sdflow.ir import PipelineError, interpret
from sdflow.ort import run_onnxruntime
from sdflow.passes import PassContext, run_pipeline
from sdflow.passes.quantization.quantize_weights import QuantizeWeights, quantize_graph

F = np.float32


def _mlp(helpers, rng):
    """x [batch, 64] -> MatMul W1 [64, 96] + b1 -> Relu -> MatMul W2 [96, 32]."""
    nodes = [helper.make_node("MatMul", ["x", "w1"], ["h0"]), helper.make_node("Add", ["h0", "b1"], ["h1"]),
             helper.make_node("Relu", ["h1"], ["h"]), helper.make_node("MatMul", ["h", "w2"], ["y"])]
    weights = {"w1": rng.standard_normal((64, 96)).astype(F) / 8, "b1": rng.standard_normal(96).astype(F),
               "w2": rng.standard_normal((96, 32)).astype(F) / 10}
    return helpers.make_model(nodes, [("x", F, ["batch", 64])], [("y", F, ["batch", 32])], weights)


def _relative(a, b):
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


@pytest.mark.parametrize("bits, tolerance", [(8, 0.01), (4, 0.15), (3, 0.3)])
def test_rtn_weights_compile_and_stay_close_to_the_float_model(helpers, rng, bits, tolerance):
    model = _mlp(helpers, rng)
    passes = f"O2,quantize-weights{{bits={bits},group_size=32,min_elements=0}}"
    compiled = sdflow.compile(model, passes=passes)
    ops = [getattr(n, "kernel", "") or n.op_type for n in compiled.graph.op_nodes()]
    # the weights are dequantized inside their products' kernels (nbits.h)
    assert ops.count("DequantizeLinear") == 0, ops
    assert sum(op.startswith("DequantizeLinear+MatMul") for op in ops) == 2, ops
    codes = [compiled.graph.constant(n) for n in compiled.graph.constants if n.endswith("__nbits_codes")]
    assert len(codes) == 2 and all(c.dtype.itemsize == 1 for c in codes)
    x = rng.standard_normal((5, 64)).astype(F)
    got = compiled(x=x).as_dict()["y"]
    reference = run_onnxruntime(model, {"x": x})["y"]
    assert _relative(got, reference) < tolerance
    # the compiled kernels compute what the quantized graph means
    graph = import_model(model)
    run_pipeline(graph, passes)
    np.testing.assert_allclose(got, interpret(graph, {"x": x})["y"], rtol=1e-4, atol=1e-5)


def test_gptq_beats_rtn_on_every_layer_of_the_trained_minilm():
    from sdflow import zoo
    path = zoo.export("minilm", reduced=True)
    rng = np.random.default_rng(0)
    feeds = [{"input_ids": rng.integers(100, 20000, (1, 24)).astype(np.int64),
              "attention_mask": np.ones((1, 24), np.int64)} for _ in range(4)]
    errors = {}
    for method in ("rtn", "gptq"):
        graph = import_model(onnx.load(path))
        run_pipeline(graph, "O2")
        config = QuantizeWeights(bits=4, group_size=128, method=method)
        found, _ = quantize_graph(graph, config, feeds)
        errors[method] = {e.weight: e.relative for e in found}
    assert len(errors["gptq"]) >= 8 and errors["gptq"].keys() == errors["rtn"].keys()
    for weight, rtn_error in errors["rtn"].items():
        assert errors["gptq"][weight] < rtn_error, weight


def test_gptq_calibration_reaches_the_pass_from_the_api_and_the_cli(helpers, rng, tmp_path):
    model = _mlp(helpers, rng)
    path = tmp_path / "mlp.onnx"
    onnx.save(model, path)
    calibration = rng.standard_normal((6, 8, 64)).astype(F)  # 6 feeds of [8, 64]
    np.savez(tmp_path / "calibration.npz", x=calibration)
    passes = "O2,quantize-weights{bits=4,group_size=32,method=gptq,min_elements=0}"
    compiled = sdflow.compile(path, passes=passes, calibration=[{"x": c} for c in calibration])
    stats = compiled.pass_records[-1].result.stats
    assert stats["weights"] == 2 and 0 < stats["mean_relative_error"] < 0.05
    from_file = sdflow.compile(path, passes=passes, calibration=tmp_path / "calibration.npz")
    x = rng.standard_normal((3, 64)).astype(F)
    np.testing.assert_array_equal(compiled(x=x).as_dict()["y"], from_file(x=x).as_dict()["y"])
    rtn = sdflow.compile(path, passes=passes.replace("gptq", "rtn"))
    assert not np.array_equal(rtn(x=x).as_dict()["y"], compiled(x=x).as_dict()["y"])
    result = subprocess.run([sys.executable, "-m", "sdflow", "compile", str(path), "-p", passes, "--calibration",
                             str(tmp_path / "calibration.npz")], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    result = subprocess.run([sys.executable, "-m", "sdflow", "compile", str(path), "-p", passes],
                            capture_output=True, text=True)
    assert result.returncode == 1 and "needs calibration inputs" in result.stderr


def test_bad_options_and_missing_calibration_are_pipeline_errors(helpers, rng):
    graph = import_model(_mlp(helpers, rng))
    with pytest.raises(PipelineError, match="bits must be 3, 4 or 8"):
        run_pipeline(graph, "quantize-weights{bits=5}")
    with pytest.raises(PipelineError, match="method must be one of rtn, gptq"):
        run_pipeline(graph, "quantize-weights{method=awq}")
    with pytest.raises(PipelineError, match="needs calibration inputs"):
        run_pipeline(graph, "quantize-weights{method=gptq}", ctx=PassContext())
    with pytest.raises(PipelineError, match="lacks input 'x'"):
        run_pipeline(graph, "quantize-weights{method=gptq,min_elements=0}",
                     ctx=PassContext(calibration=({"y": np.zeros((1, 64), F)},)))
    for bad in (np.zeros((2, 63), F), np.zeros((2, 64), np.float64), np.zeros(64, F)):
        with pytest.raises(PipelineError, match="calibration input 'x' is"):
            run_pipeline(graph, "quantize-weights{method=gptq,min_elements=0}",
                         ctx=PassContext(calibration=({"x": bad},)))
