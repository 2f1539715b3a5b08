"""sdflow view without a browser: which pages the file holds, that their overlay values are the analysis' and
the profile's, and that the page needs nothing outside itself."""
from __future__ import annotations

import json
import re

import numpy as np
import onnx
import pytest

import sdflow
from sdflow.cli import main as cli_main
from sdflow.passes.analysis import operator_traffic
from sdflow.viewer import pages_for, render_html, write_view


@pytest.fixture
def transformer(helpers, tmp_path):
    example = helpers.load_example("transformer")
    path = tmp_path / "transformer.onnx"
    onnx.save(example.build_model(), path)
    return path, example


def _page_data(html: str) -> dict:
    match = re.search(r'<script type="application/json" id="sdflow-data">(.*?)</script>', html, re.S)
    return json.loads(match.group(1))


def test_one_page_per_pass_with_bytes_moved_per_op(transformer):
    path, _ = transformer
    pages = pages_for(path, "O1", {"batch": 8})
    assert [p.label for p in pages] == ["input", "fold-constants", "fold-shape-inputs", "eliminate-dead-nodes"]
    final = sdflow.optimize(sdflow.load(path), "O1")
    expected = sorted(sum(t.evaluate({"batch": 8})) for t in operator_traffic(final))
    assert sorted(pages[-1].bytes_moved.values()) == expected
    # Each value sits on the node the renderer draws: the id is the node's index in the page's state.
    nodes = pages[-1].sdfg["nodes"][0]["nodes"]
    for node_id, label in pages[-1].op_labels.items():
        state, index = map(int, node_id.split("/"))
        assert state == 0 and nodes[index]["label"] == label and nodes[index]["type"] == "LibraryNode"
    assert len(pages[0].bytes_moved) > len(pages[-1].bytes_moved)  # dead ops are gone after O1


def test_the_page_is_self_contained(transformer, tmp_path):
    path, _ = transformer
    html_file = write_view(path, tmp_path / "view.html")
    html = html_file.read_text()
    markup = re.sub(r"(<script[^>]*>).*?</script>", r"\1</script>", html, flags=re.S)  # tags, not JS code
    external = [u for u in re.findall(r'(?:src|href)\s*=\s*"([^"]*)"', markup) if not u.startswith(("data:", "#"))]
    assert external == []
    assert "webpackChunk_spcl_sdfv" in html and "WebSDFV" in html  # the renderer and its chunks are inline
    assert "site-packages" not in html
    data = _page_data(html)
    assert len(data["pages"]) == 15 and all(p["sdfg"]["type"] == "SDFG" for p in data["pages"])  # input + O2
    assert data["pages"][-1]["label"] == "14 eliminate-dead-nodes"


def test_sources_a_dump_folder_and_a_saved_sdfg(transformer, tmp_path):
    path, _ = transformer
    sdflow.optimize(sdflow.load(path), "O1", dump_dir=tmp_path / "passes")
    assert [p.label for p in pages_for(tmp_path / "passes")] == ["input", "fold-constants", "fold-shape-inputs",
                                                                 "eliminate-dead-nodes"]
    assert [p.label for p in pages_for(tmp_path / "passes" / "00-input.sdfg")] == ["input"]
    assert [p.label for p in pages_for(tmp_path / "passes" / "00-input.sdfg", "eliminate-dead-nodes")] == [
        "input", "eliminate-dead-nodes"]
    assert cli_main(["view", str(tmp_path / "passes")]) == 0
    assert (tmp_path / "passes" / "passes.html").exists()


def test_profile_times_land_on_the_ops_they_measured(transformer, tmp_path):
    path, example = transformer
    compiled = sdflow.compile(path, instrument=True)
    feeds = {"x": np.ones((2, 16, 64), np.float32), "mask": np.ones((2, 16), np.int64)}
    report = compiled.profile_report(**feeds, runs=3)
    assert all(e["args"]["sdfg_id"] == e["args"]["cfg_id"] for e in report["traceEvents"])
    data = _page_data(render_html(pages_for(path), "t", profile=report))
    final = data["pages"][-1]
    labels = {node_id: final["sdfg"]["nodes"][0]["nodes"][int(node_id.split("/")[1])]["label"]
              for node_id in final["ms"]}
    from sdflow.codegen.lowering import becomes_view
    graph = compiled.graph
    assert set(labels.values()) == {n.label for n in graph.op_nodes() if not becomes_view(graph, n)}
    assert all(ms >= 0 for ms in final["ms"].values())


def test_cli_errors_are_one_line(transformer, tmp_path, capsys):
    path, _ = transformer
    assert cli_main(["view", str(tmp_path / "missing.onnx")]) == 1
    assert "no such model" in capsys.readouterr().err
    assert cli_main(["view", str(path), "--profile", str(path)]) == 1
    assert "cannot read the report" in capsys.readouterr().err
    (tmp_path / "other.json").write_text("{}")
    assert cli_main(["view", str(path), "--profile", str(tmp_path / "other.json")]) == 1
    assert "not a report of `sdflow run --profile`" in capsys.readouterr().err
