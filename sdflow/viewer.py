"""``sdflow view``: one self-contained HTML file with the graph after every pass, drawn by DaCe's own SDFG
renderer (``sdfv.js`` from the dace wheel, inlined with its lazily loaded chunks, so the file works offline and
when copied elsewhere). A pass selector switches graphs; overlays colour op nodes by bytes moved (the
data-movement analysis) or by measured time (a report from ``sdflow run --profile``)."""
from __future__ import annotations

import dataclasses
import json
import pathlib
import re

import dace
import jinja2

from sdflow import api
from sdflow.codegen.runtime import op_milliseconds
from sdflow.ir import Graph, SdflowError
from sdflow.passes.analysis import operator_traffic

__all__ = ["Page", "pages_for", "render_html", "write_view"]

ASSETS = pathlib.Path(__file__).resolve().parent / "viewer_assets"
WEBCLIENT = pathlib.Path(dace.__file__).resolve().parent / "viewer"
_DUMP_FILE = re.compile(r"^(\d+)-(.+)\.sdfgz?$")


@dataclasses.dataclass
class Page:
    """One graph of the pass selector: its label, the SDFG as JSON, and per-node values keyed by the
    renderer's node id (``"<state>/<node>"``)."""

    label: str
    sdfg: dict
    bytes_moved: dict[str, int]
    op_labels: dict[str, str]


def pages_for(source, passes: str | None = None, dims: dict[str, int] | None = None) -> list[Page]:
    """Pages for an ONNX model (the graph before and after each pass of ``passes``, default O1), a saved
    ``.sdfg`` (as it is, or before/after each pass when ``passes`` is given) or a ``--dump-dir`` folder
    (its ``NN-<pass>.sdfg`` files in order). Unbound symbolic dims count as ``dims.get(name, 1)``."""
    path = pathlib.Path(source)
    if path.is_dir():
        files = sorted((f for f in path.iterdir() if _DUMP_FILE.match(f.name)), key=lambda f: int(
            _DUMP_FILE.match(f.name).group(1)))
        if not files:
            raise SdflowError(f"{path}: no NN-<pass>.sdfg files (write them with sdflow compile --dump-dir)")
        return [_page(_DUMP_FILE.match(f.name).group(2), Graph.load(f), dims) for f in files]
    if not path.exists():
        raise SdflowError(f"{path}: no such model, .sdfg file or dump folder")
    is_sdfg = path.name.endswith((".sdfg", ".sdfgz"))
    graph = api.load(path)
    pipeline = passes if passes is not None else ("O0" if is_sdfg else api.DEFAULT_PASSES)
    pages: list[Page] = []
    api.optimize(graph, pipeline, after_each=lambda label, g: pages.append(_page(label, g, dims)))
    return pages


def _page(label: str, graph: Graph, dims: dict[str, int] | None) -> Page:
    bound = {name: (dims or {}).get(name, 1) for name in graph.symbols}
    state_id = graph.sdfg.node_id(graph.state)
    ids = {node.label: f"{state_id}/{graph.state.node_id(node)}" for node in graph.op_nodes()}
    moved = {ids[t.label]: sum(t.evaluate(bound)) for t in operator_traffic(graph)}
    return Page(label, graph.structure_json(), moved, {node_id: label for label, node_id in ids.items()})


def render_html(pages: list[Page], title: str, dims: dict[str, int] | None = None,
                profile: dict | None = None) -> str:
    """The HTML text; ``profile`` is a report of ``sdflow run --profile`` (times shown where op labels
    match)."""
    times = op_milliseconds(profile) if profile else {}
    data = {
        "title": title,
        "dims": dims or {},
        "pages": [{
            "label": f"{index:02d} {page.label}",
            "sdfg": page.sdfg,
            "bytes": page.bytes_moved,
            "ms": {node_id: times[op] for node_id, op in page.op_labels.items() if op in times},
        } for index, page in enumerate(pages)],
    }
    dist = WEBCLIENT / "webclient" / "dist"
    # Chunks first: webpack's runtime in sdfv.js adopts chunks already pushed, so it never fetches a file.
    chunks = sorted(p for p in dist.glob("*.js") if p.name not in ("sdfv.js", "sdfv_jupyter.js"))
    scripts = [_inline_script(p.read_text(encoding="utf-8")) for p in chunks + [dist / "sdfv.js"]]
    environment = jinja2.Environment(loader=jinja2.FileSystemLoader([str(ASSETS), str(WEBCLIENT / "templates")]),
                                     autoescape=False)
    return environment.get_template("view.html").render(
        title=title, scripts=scripts, style=(ASSETS / "view.css").read_text(),
        glue=_inline_script((ASSETS / "view.js").read_text()), data=json.dumps(data).replace("<", "\\u003c"))


def write_view(source, output=None, passes: str | None = None, dims: dict[str, int] | None = None,
               profile_path=None) -> pathlib.Path:
    """Writes the HTML file for ``source`` (see ``pages_for``) and returns its path (default:
    ``<source>.html`` beside the model, ``<folder>/passes.html`` for a dump folder)."""
    source = pathlib.Path(source)
    profile = _read_profile(profile_path) if profile_path else None
    pages = pages_for(source, passes, dims)
    if output is None:
        output = source / "passes.html" if source.is_dir() else source.with_name(source.name + ".html")
    output = pathlib.Path(output)
    output.write_text(render_html(pages, source.name, dims, profile), encoding="utf-8")
    return output


def _read_profile(path) -> dict:
    try:
        report = json.loads(pathlib.Path(path).read_text())
    except (OSError, ValueError) as error:
        raise SdflowError(f"--profile {path}: cannot read the report: {error}") from None
    if "sdflowOps" not in report or "traceEvents" not in report:
        raise SdflowError(f"--profile {path}: not a report of `sdflow run --profile` (no sdflowOps/traceEvents)")
    return report


def _inline_script(text: str) -> str:
    # Only "</script" ends a <script> element early; in JS strings and regexes "<\/script" means the same.
    return re.sub(r"</(script)", r"<\\/\1", text, flags=re.IGNORECASE)
