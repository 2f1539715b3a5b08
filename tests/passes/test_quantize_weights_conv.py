"""quantize-weights on convolutions, as matrices: each filter bank [C_out, C_in, k...] quantized as its [C_out, K]
matrix (rows = output channels, groups along K) by RTN or GPTQ, whose X is the input unfolded into patches
(conv_patches, pinned against the convolution itself); the graph says DequantizeLinear (axis 1) + Reshape, the
compiled model computes what it says, GPTQ's reconstruction error is below RTN's on every convolution, and
`sdflow quantize` writes a file ONNX Runtime runs to the same numbers."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import helper

import sdflow
from sdflow.frontends.onnx import import_model
from sdflow.ir import interpret
from sdflow.ort import run_onnxruntime
from sdflow.passes import PassContext, run_pipeline
from sdflow.passes.quantization.quantize_weights import QuantizeWeights, conv_patches, quantize_graph
from sdflow.quantize import quantize_onnx

F = np.float32


def _convnet(helpers, rng):
    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["h0"], pads=[1, 1, 1, 1], strides=[2, 2]),
             helper.make_node("Relu", ["h0"], ["h"]),
             helper.make_node("Conv", ["h", "w2"], ["y"], kernel_shape=[3, 3], auto_pad="SAME_UPPER")]
    weights = {"w1": rng.standard_normal((32, 16, 3, 3)).astype(F) / 10, "b1": rng.standard_normal(32).astype(F),
               "w2": rng.standard_normal((24, 32, 3, 3)).astype(F) / 10}
    return helpers.make_model(nodes, [("x", F, ["n", 16, 20, 20])], [("y", F, ["n", 24, 10, 10])], weights)


def _calibration(rng, count=4):
    return [{"x": rng.standard_normal((1, 16, 20, 20)).astype(F)} for _ in range(count)]


@pytest.mark.parametrize("attributes", [dict(pads=[1, 0, 2, 1], strides=[2, 1], dilations=[1, 2]),
                                        dict(auto_pad="SAME_LOWER", strides=[2, 2]), dict(auto_pad="VALID")])
def test_patches_times_the_filter_matrix_is_the_convolution(helpers, rng, attributes):
    w = rng.standard_normal((5, 3, 3, 2)).astype(F)
    model = helpers.make_model([helper.make_node("Conv", ["x", "w"], ["y"], kernel_shape=[3, 2], **attributes)],
                               [("x", F, [2, 3, 9, 8])], [("y", F, ["b", "c", "h", "w"])], {"w": w})
    x = rng.standard_normal((2, 3, 9, 8)).astype(F)
    expected = run_onnxruntime(model, {"x": x})["y"]
    node = import_model(model).op_nodes()[0]
    rows = conv_patches(x, node, (3, 2)) @ w.reshape(5, -1).T.astype(np.float64)  # [batch x positions, C_out]
    got = rows.reshape(2, -1, 5).transpose(0, 2, 1).reshape(expected.shape)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("spec", ["O2,quantize-weights{bits=4,group_size=32,min_elements=0}",
                                  "quantize-weights{bits=3,group_size=-1,min_elements=0},O2",
                                  "O2,quantize-weights{bits=4,group_size=64,min_elements=0,method=gptq}",
                                  "O2,quantize-weights{bits=8,group_size=-1,min_elements=0}"])
def test_convolution_weights_are_quantized_as_matrices(helpers, rng, spec):
    model = _convnet(helpers, rng)
    calibration = _calibration(rng)
    graph = import_model(model)
    run_pipeline(graph, spec.split(",O2")[0] if spec.endswith(",O2") else spec,
                 ctx=PassContext(calibration=tuple(calibration)))
    dequantize = [n for n in graph.op_nodes() if n.op_type == "DequantizeLinear"]
    assert len(dequantize) == 2 and all(n.attr("axis") == 1 for n in dequantize)
    assert sum(n.op_type == "Reshape" for n in graph.op_nodes()) == 2
    feeds = {"x": rng.standard_normal((2, 16, 20, 20)).astype(F)}
    compiled = sdflow.compile(model, passes=spec, calibration=calibration if "gptq" in spec else None)
    ours = compiled(**feeds)[0]
    np.testing.assert_allclose(ours, interpret(compiled.graph, feeds)["y"], rtol=1e-4, atol=1e-4)
    expected = run_onnxruntime(model, feeds)["y"]
    relative = float(np.linalg.norm(ours - expected) / np.linalg.norm(expected))
    assert 1e-5 < relative < {"bits=8": 0.01, "bits=4": 0.15, "bits=3": 0.4}[spec.split("{")[1].split(",")[0]]


@pytest.mark.parametrize("bits", [3, 4])
def test_gptq_reconstructs_every_convolution_better_than_rtn(helpers, rng, bits):
    model = _convnet(helpers, rng)
    calibration = _calibration(rng, 8)
    errors = {}
    for method in ("rtn", "gptq"):
        graph = import_model(model)
        config = QuantizeWeights(bits=bits, group_size=-1, method=method, min_elements=0)
        found, _ = quantize_graph(graph, config, calibration)
        errors[method] = {e.weight: e.relative for e in found}
    assert set(errors["rtn"]) == set(errors["gptq"]) and len(errors["rtn"]) == 2
    for weight, rtn in errors["rtn"].items():
        assert 0 < errors["gptq"][weight] < rtn, (weight, errors["gptq"][weight], rtn)


def test_the_written_file_holds_the_codes_and_runs_in_onnxruntime(helpers, rng, tmp_path):
    model = _convnet(helpers, rng)
    out = tmp_path / "q4.onnx"
    summary = quantize_onnx(model, "quantize-weights{bits=4,group_size=32,min_elements=0}", out)
    written = onnx.load(out)
    assert summary.weights == 2 and summary.quantized_bytes < summary.float_bytes / 4
    assert sum(n.op_type == "DequantizeLinear" for n in written.graph.node) == 2
    feeds = {"x": rng.standard_normal((1, 16, 20, 20)).astype(F)}
    theirs = run_onnxruntime(written, feeds)["y"]
    ours = sdflow.compile(model, passes="O2,quantize-weights{bits=4,group_size=32,min_elements=0}")(**feeds)[0]
    np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-4)
    again = sdflow.compile(written, passes="O2")(**feeds)[0]  # sdflow reads the file back to the same numbers
    np.testing.assert_allclose(again, theirs, rtol=1e-4, atol=1e-4)
