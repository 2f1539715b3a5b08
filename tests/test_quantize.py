"""``sdflow quantize``: the quantized weights written into the ONNX file as blocked DequantizeLinear (opset 21);
ONNX Runtime runs the file and computes what sdflow's quantized model computes; sdflow imports the file back."""
from __future__ import annotations

import pathlib
import subprocess
import sys

import numpy as np
import onnx
import onnxruntime as ort
import pytest

import sdflow
from sdflow import zoo
from sdflow.ir import PipelineError
from sdflow.quantize import quantize_onnx


def _ort(path, feeds):
    # ONNX Runtime's full optimisation turns DequantizeLinear(uint4) + MatMul into its MatMulNBits kernel, which
    # computes with its own accuracy (~0.6% off on MiniLM): the QDQ graph itself is compared, as written.
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return session.run(None, feeds)


@pytest.mark.parametrize("bits, group", [(4, 128), (3, 64), (8, -1)])
def test_quantized_file_runs_in_onnxruntime_as_sdflow_runs_it(tmp_path, bits, group):
    path = zoo.export("minilm", reduced=True)
    out = tmp_path / "quantized.onnx"
    passes = f"quantize-weights{{bits={bits},group_size={group}}}"
    summary = quantize_onnx(path, passes, out)
    stored = 8 if bits == 8 else 4  # (3-bit codes are stored as uint4 in the file)
    assert summary.weights >= 8 and summary.quantized_bytes < summary.float_bytes * (stored + 1) / 32
    model = onnx.load(out)
    assert next(e.version for e in model.opset_import if e.domain in ("", "ai.onnx")) == 21
    assert sum(n.op_type == "DequantizeLinear" for n in model.graph.node) == summary.weights
    rng = np.random.default_rng(bits)
    feeds = {"input_ids": rng.integers(100, 20000, (2, 16)).astype(np.int64),
             "attention_mask": np.ones((2, 16), np.int64)}
    expected = _ort(out, feeds)[0]
    ours = sdflow.compile(path, passes=passes)(**feeds)[0]
    np.testing.assert_allclose(ours, expected, rtol=1e-4, atol=1e-5)
    imported = sdflow.compile(out, passes="O2")(**feeds)[0]  # a QDQ model from elsewhere imports and runs
    np.testing.assert_allclose(imported, expected, rtol=1e-4, atol=1e-5)
    reference = _ort(path, feeds)[0]
    cosine = np.sum(expected * reference, -1) / (np.linalg.norm(expected, axis=-1) * np.linalg.norm(reference, axis=-1))
    assert cosine.min() > {8: 0.999, 4: 0.98, 3: 0.9}[bits]


def test_the_cli_quantizes_with_gptq_and_says_what_it_wrote(helpers, rng, tmp_path):
    from onnx import helper
    nodes = [helper.make_node("MatMul", ["x", "w1"], ["h"]), helper.make_node("Relu", ["h"], ["r"]),
             helper.make_node("MatMul", ["r", "w2"], ["y"])]
    weights = {"w1": rng.standard_normal((64, 96)).astype(np.float32) / 8,
               "w2": rng.standard_normal((96, 32)).astype(np.float32) / 10}
    path = tmp_path / "mlp.onnx"
    onnx.save(helpers.make_model(nodes, [("x", np.float32, ["batch", 64])], [("y", np.float32, ["batch", 32])],
                                 weights), path)
    np.savez(tmp_path / "calibration.npz", x=rng.standard_normal((4, 16, 64)).astype(np.float32))
    out = tmp_path / "mlp-gptq.onnx"
    result = subprocess.run([sys.executable, "-m", "sdflow", "quantize", str(path), "-o", str(out), "-p",
                             "quantize-weights{bits=4,group_size=32,method=gptq,min_elements=0}", "--calibration",
                             str(tmp_path / "calibration.npz")], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "2 weight(s) quantized" in result.stdout and "reconstruction error" in result.stdout
    x = rng.standard_normal((3, 64)).astype(np.float32)
    assert np.isfinite(_ort(out, {"x": x})[0]).all()
    result = subprocess.run([sys.executable, "-m", "sdflow", "quantize", str(path), "-o", str(out), "-p", "O2"],
                            capture_output=True, text=True)
    assert result.returncode == 1 and "writes quantize-weights passes or one quantize-dynamic-int8" in result.stderr
    assert result.stderr.count("\n") == 1
    with pytest.raises(PipelineError, match="needs calibration inputs"):
        quantize_onnx(path, "quantize-weights{method=gptq,min_elements=0}", out)
    for arguments, message in (([str(tmp_path / "missing.onnx"), "-o", str(out)], "cannot read ONNX model"),
                               ([str(path), "-o", str(tmp_path / "no" / "dir.onnx")], "cannot write")):
        result = subprocess.run([sys.executable, "-m", "sdflow", "quantize", *arguments], capture_output=True,
                                text=True)
        assert result.returncode == 1 and message in result.stderr and "Traceback" not in result.stderr


def test_the_accuracy_benchmark_runs_on_a_few_sentences(tmp_path):
    """benchmarks/quantization_accuracy.py (docs/quantization.md) on the 2-layer MiniLM and 16 sentences: every
    row is there and the cosines are cosines (the full run is the documented command)."""
    out = tmp_path / "quantization.md"
    script = pathlib.Path(__file__).resolve().parents[1] / "benchmarks" / "quantization_accuracy.py"
    result = subprocess.run([sys.executable, str(script), "--sentences", "16", "--calibration", "4", "--reduced",
                             "-o", str(out)], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    text = out.read_text()
    accuracy, latency = text.split("## Latency of the int8 dynamic model")
    rows = [line for line in accuracy.splitlines() if line.startswith("| ") and "---" not in line][1:]
    assert len(rows) >= 14 and rows[0].startswith("| float32 | sdflow | 1.00000")
    assert sum(row.startswith("| int8 dynamic: ") for row in rows) == 3
    assert sum(row.startswith("| int8 static: ") for row in rows) == 3
    for row in rows:
        low, mean = (float(v) for v in row.split("|")[3:5])
        assert 0 < low <= mean <= 1.00001
    timings = [line for line in latency.splitlines() if line.startswith("| ") and "---" not in line][1:]
    assert len(timings) == 9 and timings[0].startswith("| float32 | sdflow |")
    assert all(float(row.split("|")[3]) > 0 for row in timings)


def test_the_perplexity_benchmark_trains_quantizes_and_evaluates(tmp_path):
    """benchmarks/gpt2_perplexity.py --quick (docs/quantization-gpt2.md): a 1-layer model trained for seconds,
    every row of the table there, perplexities of bytes (1 < p < 256), sdflow's float32 equal to ONNX Runtime's."""
    out = tmp_path / "gpt2.md"
    script = pathlib.Path(__file__).resolve().parents[1] / "benchmarks" / "gpt2_perplexity.py"
    result = subprocess.run([sys.executable, str(script), "--quick", "--windows", "4", "--calibration", "4",
                             "-o", str(out)], capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-2000:]
    text = out.read_text()
    rows = [line for line in text.splitlines() if line.startswith("| ") and "---" not in line][1:]
    assert [row.split("|")[1].strip() for row in rows] == [
        "float32", "RTN 4-bit, g128", "GPTQ 4-bit, g128", "RTN 3-bit, g128", "GPTQ 3-bit, g128", "RTN 4-bit, per row",
        "GPTQ 4-bit, per row", "RTN 3-bit, per row", "GPTQ 3-bit, per row"]
    values = [float(row.split("|")[2]) for row in rows]
    assert all(1 < v < 256 for v in values)
    reference = float(text.split("ONNX Runtime on the float32 file: ")[1].split(".\n")[0].rstrip("."))
    assert abs(values[0] - reference) < 1e-3 * reference


@pytest.mark.parametrize("options", ["", "{per_row=false,per_channel=false}"])
def test_the_int8_dynamic_file_runs_in_onnxruntime_as_sdflow_runs_it(tmp_path, options):
    """`sdflow quantize -p quantize-dynamic-int8` writes standard ops (ReduceMin/Max, Round, MatMulInteger, ...)
    that compute the codes and sums of sdflow's QuantizedMatMul: ONNX Runtime's outputs equal sdflow's within
    float rounding; sdflow imports the file and runs it too."""
    path = zoo.export("minilm", reduced=True)
    out = tmp_path / "int8.onnx"
    passes = f"quantize-dynamic-int8{options}"
    summary = quantize_onnx(path, passes, out)
    model = onnx.load(out)
    assert summary.weights == 12 and sum(n.op_type == "MatMulInteger" for n in model.graph.node) == 12
    assert summary.quantized_bytes < summary.float_bytes / 3
    rng = np.random.default_rng(2)
    feeds = {"input_ids": rng.integers(100, 20000, (2, 16)).astype(np.int64),
             "attention_mask": np.ones((2, 16), np.int64)}
    expected = _ort(out, feeds)[0]
    ours = sdflow.compile(path, passes=passes)(**feeds)[0]
    cosine = np.sum(ours * expected, -1) / (np.linalg.norm(ours, axis=-1) * np.linalg.norm(expected, axis=-1))
    assert cosine.min() > 0.9999  # (a code can round the other way where float kernels differ in the last bit)
    imported = sdflow.compile(out, passes="O2")(**feeds)[0]
    np.testing.assert_allclose(imported, expected, rtol=1e-3, atol=1e-4)


def test_the_int8_static_file_is_qdq_that_onnxruntime_runs_as_sdflow_runs_it(tmp_path):
    """`sdflow quantize -p quantize-static-int8` (calibrated on token sequences) writes QDQ: QuantizeLinear /
    DequantizeLinear on each product's activation with the ranges sdflow's pass finds, int8 weights per column.
    ONNX Runtime (its QDQ fusions on) computes what sdflow's compiled static model computes."""
    path = zoo.export("minilm", reduced=True)
    rng = np.random.default_rng(3)
    calibration = [{"input_ids": rng.integers(100, 20000, (1, 20)).astype(np.int64),
                    "attention_mask": np.ones((1, 20), np.int64)} for _ in range(6)]
    out = tmp_path / "static.onnx"
    passes = "quantize-static-int8{calibrate=minmax}"
    with pytest.raises(PipelineError, match="needs calibration"):
        quantize_onnx(path, passes, out)
    summary = quantize_onnx(path, passes, out, calibration)
    model = onnx.load(out)
    assert summary.weights == 12 and sum(n.op_type == "QuantizeLinear" for n in model.graph.node) == 12
    feeds = {"input_ids": rng.integers(100, 20000, (2, 16)).astype(np.int64),
             "attention_mask": np.ones((2, 16), np.int64)}
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    expected = session.run(None, feeds)[0]
    ours = sdflow.compile(path, passes=f"O2,{passes}", calibration=calibration)(**feeds)[0]
    np.testing.assert_allclose(ours, expected, rtol=1e-4, atol=1e-5)
