"""quantize-dynamic-int8 on convolutions: a 1-D/2-D Conv by a constant weight (fused by O2 with its epilogue or not)
becomes DynamicQuantizeLinear -> ConvInteger (int8 weight per output channel or per tensor) -> Cast -> scales ->
bias, as ONNX Runtime's quantize_dynamic writes it; compiled, it computes what those ops' numpy references define,
stays within int8 noise of the float model, and `sdflow quantize` writes the same ops for ONNX Runtime."""
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
from sdflow.quantize import quantize_onnx

F = np.float32


def _convnet(helpers, rng):
    """A 2-D conv (stride 2, padding, bias) -> Relu -> a 1x1 conv without bias -> residual-free output."""
    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["h0"], pads=[1, 1, 1, 1], strides=[2, 2]),
             helper.make_node("Relu", ["h0"], ["h"]),
             helper.make_node("Conv", ["h", "w2"], ["y"], kernel_shape=[1, 1])]
    weights = {"w1": rng.standard_normal((32, 16, 3, 3)).astype(F) / 10, "b1": rng.standard_normal(32).astype(F),
               "w2": rng.standard_normal((24, 32, 1, 1)).astype(F) / 6}
    return helpers.make_model(nodes, [("x", F, ["n", 16, 20, 20])], [("y", F, ["n", 24, 10, 10])], weights)


def _kernels(graph):
    return [getattr(n, "kernel", "") or n.op_type for n in graph.op_nodes()]


@pytest.mark.parametrize("spec", ["O2,quantize-dynamic-int8{min_elements=0}",
                                  "quantize-dynamic-int8{min_elements=0},O2",
                                  "O2,quantize-dynamic-int8{min_elements=0,per_channel=false,reduce_range=false}"])
def test_convolutions_become_int8(helpers, rng, spec):
    model = _convnet(helpers, rng)
    graph = import_model(model)
    results = run_pipeline(graph, spec, ctx=PassContext(explain=True))
    kernels = _kernels(graph)
    assert kernels.count("ConvInteger") == 2 and kernels.count("DynamicQuantizeLinear") == 2, kernels
    assert not any(k.startswith("Conv") and k != "ConvInteger" for k in kernels), kernels
    assert any(r.name == "quantize-dynamic-int8" and r.result.stats["convs"] == 2 for r in results)
    feeds = {"x": rng.standard_normal((2, 16, 20, 20)).astype(F)}
    compiled = sdflow.compile(model, passes=spec)
    ours = compiled(**feeds)[0]
    meant = interpret(compiled.graph, feeds)["y"]  # the ops' numpy references: what the quantized model means
    np.testing.assert_allclose(ours, meant, rtol=1e-5, atol=1e-5)
    expected = run_onnxruntime(model, feeds)["y"]
    relative = float(np.linalg.norm(ours - expected) / np.linalg.norm(expected))
    assert 1e-4 < relative < 0.05, relative


def test_small_conv_weights_stay_float(helpers, rng):
    """min_elements: w1 (4,608 elements) is quantized at 1,000, w2 (768) is not, and the pass says why."""
    graph = import_model(_convnet(helpers, rng))
    results = run_pipeline(graph, "quantize-dynamic-int8{min_elements=1000}", ctx=PassContext(explain=True))
    assert _kernels(graph).count("ConvInteger") == 1 and _kernels(graph).count("Conv") == 1
    notes = [n for r in results for n in r.result.notes]
    assert any("w2 stays float32" in n for n in notes), notes


def test_the_written_int8_conv_model_runs_in_onnxruntime_as_sdflow_runs_it(helpers, rng, tmp_path):
    model = _convnet(helpers, rng)
    out = tmp_path / "int8.onnx"
    summary = quantize_onnx(model, "quantize-dynamic-int8{min_elements=0}", out)
    written = onnx.load(out)
    assert summary.weights == 2 and sum(n.op_type == "ConvInteger" for n in written.graph.node) == 2
    assert not any(n.op_type == "Conv" for n in written.graph.node)
    feeds = {"x": rng.standard_normal((1, 16, 20, 20)).astype(F)}
    theirs = run_onnxruntime(written, feeds)["y"]
    ours = sdflow.compile(model, passes="quantize-dynamic-int8{min_elements=0},O2")(**feeds)[0]
    # The same codes and int32 sums; ONNX Runtime's DynamicQuantizeLinear may round x / scale one step apart.
    assert float(np.abs(ours - theirs).max()) < 0.02 * float(np.abs(theirs).max())
