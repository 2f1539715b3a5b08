"""The benchmark tooling stays runnable: benchmarks/run.py on one reduced zoo model (through `sdflow bench`)
writes the JSON, the Markdown table and the chart, with a ratio, compile times and per-op times;
benchmarks/conv_layers.py and benchmarks/ort_nodes.py run on a slice."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytestmark = [pytest.mark.compiled, pytest.mark.models]
pytest.importorskip("torch", reason="the benchmark needs the 'models' extra (pip install -e .[models])")
pytest.importorskip("matplotlib", reason="the benchmark chart needs matplotlib (the 'models' extra)")


def test_run_py_on_a_reduced_model(helpers, tmp_path):
    result = subprocess.run([sys.executable, str(helpers.root / "benchmarks" / "run.py"), "resnet18", "--reduced",
                             "--runs", "4", "--out", str(tmp_path)], capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]
    data = json.loads((tmp_path / "performance.json").read_text())
    assert data["pipeline"] == "O2" and data["baseline"] is None
    (record, ) = data["results"]
    assert record["outputs_match"] and record["sdflow_ms"] > 0 and record["onnxruntime_ms"] > 0
    # No timing order is asserted (a loaded machine can make a cache load slower than a lucky build).
    assert record["cold_compile_s"] > 0 and record["cached_compile_s"] > 0 and record["cached_compile_reused_build"]
    assert record["top_ops"] and record["top_ops"][0]["label"].startswith("conv_")  # a fused convolution
    table = (tmp_path / "performance.md").read_text()
    assert "| resnet18 | image 1x3x224x224 |" in table and "reduced-depth" in table
    assert (tmp_path / "performance.png").stat().st_size > 1000


def test_conv_layers_py_compares_both_kernels_with_onnxruntime(helpers):
    """benchmarks/conv_layers.py (where the direct kernel's per-shape choices came from) stays runnable: the first
    two ResNet-18 layer shapes, one round."""
    result = subprocess.run([sys.executable, str(helpers.root / "benchmarks" / "conv_layers.py"), "resnet18",
                             "--layers", "2", "--rounds", "1"], capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]
    rows = [line for line in result.stdout.splitlines() if line.startswith("| ") and "ms" not in line]
    assert [row.split(" |")[0] for row in rows] == ["| 3->64, 224x224, 7x7, s2, g1 x1", "| 64->64, 56x56, 3x3, s1, g1 x4",
                                                   "| weighted total"], rows


def test_ort_nodes_py_matches_ops_with_onnxruntime_nodes(helpers):
    """benchmarks/ort_nodes.py (sdflow's ops against ONNX Runtime's nodes inside the whole model) stays runnable: on
    the reduced ResNet-18 every sdflow op finds the ONNX Runtime node that writes its tensor."""
    result = subprocess.run([sys.executable, str(helpers.root / "benchmarks" / "ort_nodes.py"), "resnet18",
                             "--reduced", "--runs", "2", "--top", "50"], capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]
    rows = [line.split(" | ") for line in result.stdout.splitlines() if line.startswith("| ") and "---" not in line]
    assert rows[0][0] == "| sdflow op" and len(rows) > 5
    assert all(float(row[2]) > 0 and row[3] != "-" for row in rows[1:]), rows  # every op matched, with a time
    assert any(row[0].startswith("| conv_") for row in rows[1:])  # fused convolutions
    (total, ) = [line for line in result.stdout.splitlines() if line.startswith("sdflow ops:")]
    ops = int(total.split("(")[1].split(" ops")[0])
    assert f"{ops} matched" in total, total


def test_ort_nodes_counts_tensors_a_fused_kernel_keeps_inside_against_it(helpers, monkeypatch):
    """A tensor no sdflow op writes (fuse-conv-depthwise's expanded tensor) is charged to the op that writes the
    first tensor after it, so ONNX Runtime's nodes for it are compared with that op."""
    from onnx import helper
    monkeypatch.syspath_prepend(str(helpers.root / "benchmarks"))
    import ort_nodes
    nodes = [helper.make_node("Conv", ["x", "we"], ["e0"]), helper.make_node("Clip", ["e0"], ["e"]),
             helper.make_node("Conv", ["e", "wd"], ["d0"]), helper.make_node("Clip", ["d0"], ["d"]),
             helper.make_node("Conv", ["d", "wp"], ["y"]), helper.make_node("Relu", ["x"], ["unused"])]
    absorbed = ort_nodes.absorbed_tensors(nodes, {"conv_Conv_0_dw": ["d"], "Conv_4": ["y"]})
    assert absorbed == {"e0": "conv_Conv_0_dw", "e": "conv_Conv_0_dw", "d0": "conv_Conv_0_dw"}
