"""sdflow view in a real browser (Debian's chromium, driven through chromium-driver by selenium): the page loads
without JavaScript errors, draws the graph, redraws when another pass is picked, colours by bytes moved; and a
`sdflow run --profile` report loads onto the built program in DaCe's renderer, the code the VS Code extension
runs. Screenshots go to build/screenshots/."""
from __future__ import annotations

import gzip
import importlib.util
import json
import shutil
import time

import numpy as np
import onnx
import pytest

import sdflow
from sdflow.viewer import Page, render_html, write_view

CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")
MISSING = [what for what, found in [("chromium (apt-get install chromium)", CHROMIUM),
                                    ("chromedriver (apt-get install chromium-driver)", CHROMEDRIVER),
                                    ("selenium (pip install selenium)", importlib.util.find_spec("selenium"))]
           if not found]
pytestmark = pytest.mark.skipif(bool(MISSING), reason="browser tests need " + ", ".join(MISSING)
                                + "; `scripts/setup.sh test` installs them")

# Pixels of the graph canvas that are not (near) white: 0 means nothing is drawn.
DRAWN_PIXELS = """
    const canvas = document.querySelector('#contents canvas');
    if (!canvas) return -1;
    const pixels = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
    let drawn = 0;
    for (let i = 0; i < pixels.length; i += 4) if (pixels[i] < 235 || pixels[i + 1] < 235 || pixels[i + 2] < 235) drawn++;
    return drawn;
"""
ZOOM_TO_FIRST_OPS = """
    const renderer = WebSDFV.getInstance().get_renderer();
    const graph = renderer.get_graph();
    const state = graph.node(graph.nodes()[0]).data.graph;
    const ops = state.nodes().map(id => state.node(id)).filter(n => n.data.node.type === 'LibraryNode');
    renderer.zoom_to_view(ops.slice(0, 6));
"""


@pytest.fixture(scope="module")
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--window-size=1400,900"]:
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    yield driver
    driver.quit()


@pytest.fixture
def screenshots(helpers):
    folder = helpers.root / "build" / "screenshots"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _wait(condition, what: str, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def _javascript_errors(browser) -> list[str]:
    # The dace wheel leaves out the renderer's icon fonts; a failed font fetch is not a JavaScript error.
    return [entry["message"] for entry in browser.get_log("browser")
            if entry["level"] == "SEVERE" and entry.get("source") != "network"]


def _open(browser, path):
    browser.get(path.resolve().as_uri())
    _wait(lambda: browser.execute_script("return document.body.dataset.sdflowPage"), "the first graph")
    return _wait(lambda: browser.execute_script(DRAWN_PIXELS) > 1000, "a drawn graph")


def test_pass_selector_and_bytes_overlay(browser, helpers, tmp_path, screenshots):
    from selenium.webdriver.support.ui import Select
    model = tmp_path / "transformer.onnx"
    onnx.save(helpers.load_example("transformer").build_model(), model)
    page = write_view(model, tmp_path / "transformer.html", passes="O1", dims={"batch": 8})
    # A copy elsewhere must work as well: nothing in the page refers back to this machine's files.
    moved = shutil.copy(page, tmp_path / "elsewhere.html")
    _open(browser, tmp_path / "elsewhere.html")
    assert _javascript_errors(browser) == []
    assert browser.execute_script("return document.body.dataset.sdflowPage") == "3"
    final_graph = _wait(lambda: browser.execute_script("return document.querySelector('#contents canvas')"
                                                       ".toDataURL()"), "canvas pixels")

    Select(browser.find_element("id", "sdflow-pass")).select_by_index(0)
    _wait(lambda: browser.execute_script("return document.body.dataset.sdflowPage") == "0", "the input graph")
    input_graph = _wait(lambda: (lambda url: url if url != final_graph else None)(
        browser.execute_script("return document.querySelector('#contents canvas').toDataURL()")),
        "the drawing to change with the pass")
    assert input_graph != final_graph
    assert browser.execute_script(DRAWN_PIXELS) > 1000
    browser.save_screenshot(str(screenshots / "viewer-input-graph.png"))

    Select(browser.find_element("id", "sdflow-pass")).select_by_index(3)
    Select(browser.find_element("id", "sdflow-overlay")).select_by_value("bytes")
    legend = browser.find_element("id", "sdflow-legend").text
    assert "total" in legend and "vs previous" in legend and "batch=8" in legend
    browser.execute_script(ZOOM_TO_FIRST_OPS)
    time.sleep(1)
    # The overlay paints op nodes green to red: count strongly coloured pixels.
    coloured = browser.execute_script("""
        const canvas = document.querySelector('#contents canvas');
        const p = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
        let n = 0;
        for (let i = 0; i < p.length; i += 4)
            if (Math.max(p[i], p[i+1], p[i+2]) - Math.min(p[i], p[i+1], p[i+2]) > 120) n++;
        return n;""")
    assert coloured > 500
    browser.save_screenshot(str(screenshots / "viewer-bytes-overlay.png"))
    assert _javascript_errors(browser) == []
    print(f"screenshots: {screenshots / 'viewer-input-graph.png'}, {screenshots / 'viewer-bytes-overlay.png'}"
          f" ({moved})")


def test_profile_report_loads_onto_the_program_in_dace_renderer(browser, helpers, tmp_path, screenshots):
    """What the VS Code extension does with `sdflow run --profile`'s files: open program.sdfgz, load report.json
    (its renderer keys timings by args.sdfg_id), colour the timed states."""
    model = tmp_path / "transformer.onnx"
    onnx.save(helpers.load_example("transformer").build_model(), model)
    compiled = sdflow.compile(model, instrument=True)
    report = compiled.profile_report(np.ones((2, 16, 64), np.float32), np.ones((2, 16), np.int64), runs=2)
    program = json.loads(gzip.decompress(compiled.program_sdfg.read_bytes()))
    page = tmp_path / "program.html"
    page.write_text(render_html([Page("program", program, {}, {})], "program"))
    _open(browser, page)
    timed = browser.execute_script("""
        const sdfv = WebSDFV.getInstance();
        sdfv.onLoadedRuntimeReport(arguments[0]);
        const overlay = sdfv.get_renderer().overlayManager.overlays.find(o => o.runtime_map !== undefined);
        return overlay ? Object.keys(overlay.runtime_map) : null;""", report)
    expected = {f"{e['args']['sdfg_id']}/{e['args']['state_id']}/-1/-1" for e in report["traceEvents"]}
    assert timed is not None and set(timed) == expected
    # Every op that runs code is timed: one nested SDFG per op, with one timed state (two for a GEMM and its
    # epilogue); reshapes of intermediate float tensors are views and run nothing.
    from sdflow.codegen.lowering import becomes_view
    computing = [n for n in compiled.graph.op_nodes() if not becomes_view(compiled.graph, n)]
    assert len({e["args"]["sdfg_id"] for e in report["traceEvents"]}) == len(computing)
    assert _javascript_errors(browser) == []
    browser.save_screenshot(str(screenshots / "viewer-runtime-report.png"))
