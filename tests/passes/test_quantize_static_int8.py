"""quantize-static-int8: activation ranges from calibration (min-max, percentile, entropy) fixed in
QuantizedMatMul's a_scale / a_zero_point; the compiled kernels compute what the op's reference defines (codes
saturate outside the range), the model stays close to ONNX Runtime's float one, and the pass asks for
calibration it does not have."""
from __future__ import annotations

import numpy as np
import pytest

import sdflow
from sdflow.ir import PipelineError, interpret
from sdflow.ort import run_onnxruntime
from sdflow.passes import parse_pipeline
from sdflow.passes.quantization.quantize_static_int8 import activation_range, scale_and_zero

F = np.float32


def _ffn(helpers, rng, k=64, hidden=96):
    return helpers.ffn_model(rng, k, hidden)


@pytest.mark.parametrize("method, tolerance", [("minmax", 0.03), ("percentile", 0.03), ("entropy", 0.15)])
def test_calibrated_products_compile_to_what_they_mean(helpers, rng, method, tolerance):
    model = _ffn(helpers, rng)
    calibration = [{"x": rng.standard_normal((2, 11, 64)).astype(F)} for _ in range(3)]
    passes = f"O2,quantize-static-int8{{calibrate={method},min_elements=0}}"
    compiled = sdflow.compile(model, passes=passes, calibration=calibration)
    kernels = [getattr(n, "kernel", "") or n.op_type for n in compiled.graph.op_nodes()]
    assert kernels == ["QuantizedMatMul+Add+Relu", "QuantizedMatMul+Add"]
    assert all(len(n.parsed.steps[0].args) == 6 and n.parsed.steps[0].args[4] for n in compiled.graph.op_nodes())
    # Inputs past the calibrated range (x 3): their codes saturate, in the kernel as in the reference.
    for scale in (1.0, 3.0):
        feeds = {"x": (rng.standard_normal((2, 13, 64)) * scale).astype(F)}
        ours = compiled(**feeds)[0]
        np.testing.assert_allclose(ours, interpret(compiled.graph, feeds)["y"], rtol=1e-5, atol=1e-5)
    feeds = {"x": rng.standard_normal((2, 13, 64)).astype(F)}
    expected = run_onnxruntime(model, feeds)["y"]
    assert np.linalg.norm(compiled(**feeds)[0] - expected) / np.linalg.norm(expected) < tolerance


def test_activation_ranges():
    rng = np.random.default_rng(0)
    values = np.concatenate([rng.standard_normal(100000), [40.0, -35.0]]).astype(F)
    assert activation_range(values, "minmax") == (pytest.approx(-35.0), pytest.approx(40.0))
    low, high = activation_range(values, "percentile", 99.9)
    assert -3.6 < low < -2.9 and 2.9 < high < 3.6
    low, high = activation_range(values, "entropy")
    assert -35 < low < -2 and 2 < high < 40  # the two outliers are clipped, the bulk is not
    assert scale_and_zero(0.5, 2.0) == (pytest.approx(2.0 / 255), 0)  # the range always holds 0
    scale, zero = scale_and_zero(-1.0, 3.0)
    assert scale == pytest.approx(4.0 / 255) and zero == 64
    assert scale_and_zero(0.0, 0.0) == (1.0, 0)


def test_the_pass_needs_calibration_and_valid_options(helpers, rng):
    model = _ffn(helpers, rng)
    with pytest.raises(PipelineError, match="needs calibration"):
        sdflow.compile(model, passes="O2,quantize-static-int8{min_elements=0}")
    for bad in ("calibrate=kl", "percentile=20", "min_elements=-3"):
        with pytest.raises(PipelineError):
            parse_pipeline(f"quantize-static-int8{{{bad}}}")


def test_the_trained_minilm_stays_close():
    """The reduced trained MiniLM, calibrated on 8 random token sequences: cosine >= 0.98 with float32."""
    from sdflow import zoo
    path = zoo.export("minilm", reduced=True)
    rng = np.random.default_rng(4)
    calibration = [{"input_ids": rng.integers(100, 20000, (1, 20)).astype(np.int64),
                    "attention_mask": np.ones((1, 20), np.int64)} for _ in range(8)]
    feeds = {"input_ids": rng.integers(100, 20000, (3, 20)).astype(np.int64),
             "attention_mask": np.ones((3, 20), np.int64)}
    ours = sdflow.compile(path, passes="O2,quantize-static-int8{calibrate=percentile}", calibration=calibration)(
        **feeds)[0]
    expected = next(iter(run_onnxruntime(str(path), feeds).values()))
    cosine = np.sum(ours * expected, -1) / (np.linalg.norm(ours, axis=-1) * np.linalg.norm(expected, axis=-1))
    assert cosine.min() >= 0.98
