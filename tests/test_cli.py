"""The command line as a user runs it: compile with dumps, run with --compare-ort and --profile, view, inspect,
passes, and one-line errors with a non-zero exit (a traceback only with --debug)."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import onnx
import pytest
from onnx import helper


def sdflow(*args, check=True):
    result = subprocess.run([sys.executable, "-m", "sdflow", *map(str, args)], capture_output=True, text=True,
                            timeout=600)
    if check:
        assert result.returncode == 0, result.stdout + result.stderr[-3000:]
    return result


@pytest.fixture
def transformer_file(helpers, tmp_path):
    path = tmp_path / "encoder.onnx"
    onnx.save(helpers.load_example("transformer").build_model(), path)
    return path


@pytest.mark.compiled
def test_compile_dumps_every_pass(transformer_file, tmp_path):
    out = tmp_path / "out"
    result = sdflow("compile", transformer_file, "-o", out)
    assert "compiled encoder_block" in result.stdout and "fold-shape-inputs" in result.stdout
    assert "[sdflow]" in result.stderr  # progress
    assert sorted(p.name for p in (out / "passes").glob("*.sdfg")) == [  # the default pipeline, O2
        "00-input.sdfg", "01-fold-constants.sdfg", "02-fold-shape-inputs.sdfg", "03-eliminate-dead-nodes.sdfg",
        "04-fuse-matmul-integer.sdfg", "05-gemm-to-matmul.sdfg", "06-fuse-attention.sdfg", "07-fold-layout.sdfg",
        "08-fuse-normalization.sdfg", "09-fuse-elementwise.sdfg", "10-fuse-gemm-epilogue.sdfg",
        "11-fuse-dequantize-matmul.sdfg", "12-fuse-conv-epilogue.sdfg", "13-fuse-conv-depthwise.sdfg",
        "14-eliminate-dead-nodes.sdfg"]
    assert (out / "model.sdfg").is_file()
    dumps = tmp_path / "dumps"
    sdflow("compile", transformer_file, "--dump-dir", dumps, "-p", "fold-constants")
    assert sorted(p.name for p in dumps.glob("*.sdfg")) == ["00-input.sdfg", "01-fold-constants.sdfg"]


@pytest.mark.compiled
def test_run_with_inputs_and_compare(transformer_file, tmp_path):
    rng = np.random.default_rng(0)
    np.save(tmp_path / "x.npy", rng.standard_normal((2, 16, 64)).astype(np.float32))
    np.save(tmp_path / "mask.npy", rng.integers(0, 2, (2, 16)))
    result = sdflow("run", transformer_file, "--input", f"x={tmp_path / 'x.npy'}", "--input",
                    f"mask={tmp_path / 'mask.npy'}", "--compare-ort", "--output-dir", tmp_path / "outs")
    assert "y: float32[2, 16, 64]" in result.stdout and " ok" in result.stdout
    assert np.load(tmp_path / "outs" / "y.npy").shape == (2, 16, 64)
    random = sdflow("run", transformer_file, "--random", "--dim", "batch=3", "--compare-ort")
    assert "y: float32[3, 16, 64]" in random.stdout


@pytest.mark.compiled
def test_run_profile_then_view_with_the_report(transformer_file, tmp_path):
    import gzip
    import json
    result = sdflow("run", transformer_file, "--random", "--dim", "batch=2", "--profile", tmp_path / "prof",
                    "--runs", "3")
    assert "profile of 3 runs" in result.stdout and "ms  " in result.stdout
    report = json.loads((tmp_path / "prof" / "report.json").read_text())
    program = json.loads(gzip.decompress((tmp_path / "prof" / "program.sdfgz").read_bytes()))
    assert program["type"] == "SDFG" and report["traceEvents"]
    assert {e["args"]["sdfg_id"] for e in report["traceEvents"]} == {int(i) for i in report["sdflowOps"]}
    view = sdflow("view", transformer_file, "--profile", tmp_path / "prof" / "report.json", "-o", tmp_path / "v.html")
    assert "self-contained" in view.stdout and (tmp_path / "v.html").stat().st_size > 1_000_000


def test_inspect_lists_ops_parameters_and_unsupported(helpers, tmp_path):
    nodes = [helper.make_node("MatMul", ["x", "w"], ["m"], name="mm"),
             helper.make_node("Unsqueeze", ["m", "last"], ["signal"]),
             helper.make_node("DFT", ["signal"], ["a"], name="dft"), helper.make_node("Relu", ["a"], ["y"])]
    path = tmp_path / "partial.onnx"
    onnx.save(helpers.make_model(nodes, [("x", np.float32, ["batch", 4])], [("y", np.float32, ["batch", 2, 2])],
                                 {"w": np.ones((4, 2), np.float32), "last": np.array([2])}), path)
    out = sdflow("inspect", path).stdout
    assert "input  x: float[batch,4]" in out and "output y: float[batch,2,2]" in out
    assert "parameters: 9 in 2 tensors" in out
    assert "DFT  UNSUPPORTED" in out and "ai.onnx::DFT (opset 17): dft" in out


def test_inspect_names_element_types_compile_refuses(tmp_path):
    """A complex64 model: inspect must not say "unsupported: none" when compile refuses the element type."""
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "complex",
                              [helper.make_tensor_value_info("x", onnx.TensorProto.COMPLEX64, [2, 3])],
                              [helper.make_tensor_value_info("y", onnx.TensorProto.COMPLEX64, [2, 3])])
    path = tmp_path / "complex.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    out = sdflow("inspect", path).stdout
    assert "unsupported element type COMPLEX64: x, y" in out and "unsupported: none" not in out


def test_inspect_ir(transformer_file):
    out = sdflow("inspect", transformer_file, "--ir").stdout
    assert "unsupported: none" in out and "q_heads = Reshape(q_out) : f32[batch,16,4,16]" in out


def test_passes_lists_docs_and_levels():
    out = sdflow("passes").stdout
    assert "fold-constants" in out and "max_elements: int" in out and "O1: fold-constants" in out


def test_errors_are_one_line(tmp_path, transformer_file):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"garbage")
    result = sdflow("compile", bad, check=False)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert lines[-1].startswith("sdflow: error:") and "bad.onnx" in lines[-1]
    assert sum(line.startswith("sdflow: error:") for line in lines) == 1
    debug = sdflow("--debug", "compile", bad, check=False)
    assert debug.returncode == 1 and "Traceback" in debug.stderr
    pipeline = sdflow("compile", transformer_file, "-p", "nope", check=False)
    assert pipeline.returncode == 1 and "unknown pass 'nope'" in pipeline.stderr
    missing = sdflow("run", transformer_file, check=False)
    assert missing.returncode == 1 and "missing input(s) ['x', 'mask']" in missing.stderr


def test_report_names_the_passes_fusions_and_declined_candidates(transformer_file, tmp_path):
    import json
    text = sdflow("report", transformer_file, "--dim", "batch=8", "--explain").stdout
    assert "fuse-gemm-epilogue" in text and "fused_gemms=1" in text and "MatMul+Add+Div+Erf+Add+Mul+Mul" in text
    assert "declined (--explain):" in text and "Where scores.masked between the scores and the softmax" in text
    report_json = tmp_path / "report.json"
    sdflow("report", transformer_file, "--dim", "batch=8", "--format", "json", "-o", report_json)
    data = json.loads(report_json.read_text())
    assert [p["name"] for p in data["passes"]][:2] == ["input", "fold-constants"]
    assert data["passes"][-1]["bytes_moved"] < 0.6 * data["passes"][0]["bytes_moved"]
    assert data["ops"] == sorted(data["ops"], key=lambda o: -o["bytes_moved"])
    page = tmp_path / "report.html"
    sdflow("report", transformer_file, "--dim", "batch=8", "--format", "html", "-o", page)
    assert page.read_text().count("<svg") == 2
    md = sdflow("report", transformer_file, "--dim", "batch=8", "--format", "md", "-p", "O1", "--lowered").stdout
    assert "| pass | ops | MiB moved |" in md and "After lowering" in md


def test_report_needs_the_size_of_every_symbolic_dim(transformer_file):
    out = sdflow("report", transformer_file, check=False)
    assert out.returncode == 1 and "symbolic dims ['batch'] have no size" in out.stderr
