"""``sdflow report``: where the bytes go. The data-movement analysis before the first pass and after every pass of a
pipeline (bytes read and written at the operator boundaries, flop, intensity), which fusions fired, the top ops
of the final graph, optionally the same after lowering from DaCe's memlets, and with ``explain`` why each
declined candidate was declined. Formats: text, Markdown, JSON and one self-contained HTML page with charts."""
from __future__ import annotations

import dataclasses
import html
import json

import sympy

from sdflow.ir import Graph, SdflowError
from sdflow.passes.analysis import evaluate, operator_traffic, totals

__all__ = ["Report", "build_report", "dims_from_shapes", "FORMATS"]

FORMATS = ("text", "md", "json", "html")
MIB = 2 ** 20


@dataclasses.dataclass
class Report:
    model: str
    pipeline: str
    dims: dict
    passes: list[dict]  # one per snapshot: "input", then each pass
    ops: list[dict]  # the final graph's ops, most bytes first
    fused: list[dict]  # the Fused / Attention kernels of the final graph
    lowered: list[dict] | None = None

    @property
    def before(self) -> dict:
        return self.passes[0]

    @property
    def after(self) -> dict:
        return self.passes[-1]

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=1)


def dims_from_shapes(graph: Graph, shapes: dict[str, list[int]], dims: dict[str, int]) -> dict[str, int]:
    """Symbol sizes from input shapes (``--shape NAME=D0,D1``) and explicit ``--dim SYMBOL=N``; every symbol of the
    graph must end up bound."""
    bound = dict(dims)
    onnx_names = {graph.onnx_name(n): n for n in graph.inputs}
    for name, shape in shapes.items():
        if name not in onnx_names:
            raise SdflowError(f"--shape {name}: the model has no input {name!r}; inputs: {sorted(onnx_names)}")
        ttype = graph.tensor_type(onnx_names[name])
        if len(shape) != ttype.rank:
            raise SdflowError(f"--shape {name}: {len(shape)} dims given, the input has rank {ttype.rank}")
        for dim, size in zip(ttype.shape, shape):
            if isinstance(dim, sympy.Symbol):
                bound.setdefault(str(dim), size)
    missing = [s for s in graph.symbols if s not in bound]
    if missing:
        raise SdflowError(f"symbolic dims {missing} have no size; give --shape INPUT=D0,D1,... or --dim SYMBOL=N")
    return bound


def _snapshot(label: str, graph: Graph, dims: dict) -> dict:
    total = totals(operator_traffic(graph), dims)
    return {"name": label, "ops": total.ops, "bytes_read": total.bytes_read, "bytes_written": total.bytes_written,
            "bytes_moved": total.bytes_moved, "flop": total.flop}


def build_report(graph: Graph, pipeline: str, dims: dict, model: str = "", explain: bool = False,
                 lowered: bool = False, progress=None, calibration=None) -> Report:
    """The report of running ``pipeline`` on (a copy of) ``graph`` with the symbols bound to ``dims``
    (``calibration``: example feeds for the passes that need them, as ``sdflow.compile`` takes them)."""
    from sdflow import api
    snapshots: list[tuple[str, dict]] = []
    final = api.optimize(graph, pipeline, explain=explain, progress=progress, calibration=calibration,
                         after_each=lambda label, g: snapshots.append((label, _snapshot(label, g, dims))))
    passes = []
    for index, (label, entry) in enumerate(snapshots):
        if index > 0:
            record = final.pass_records[index - 1]
            entry.update(stats=record.result.stats, fired=record.result.modified, notes=record.result.notes,
                         seconds=round(record.seconds, 4))
            entry["delta_bytes"] = entry["bytes_moved"] - passes[-1]["bytes_moved"]
        passes.append(entry)
    ops = []
    for record in operator_traffic(final):
        read, written = record.evaluate(dims)
        ops.append({"label": record.label, "op_type": record.op_type, "kernel": record.kernel,
                    "bytes_read": read, "bytes_written": written, "bytes_moved": read + written,
                    "flop": record.evaluate_flop(dims), "intensity": round(record.intensity(dims), 3)})
    fused = [{"label": o["label"], "op_type": o["op_type"], "kernel": o["kernel"] or o["op_type"],
              "bytes_moved": o["bytes_moved"]} for o in ops if o["op_type"] in ("Fused", "Attention")]
    ops.sort(key=lambda o: -o["bytes_moved"])
    report = Report(model, pipeline, dict(dims), passes, ops, fused)
    if lowered:
        report.lowered = _lowered(final, dims)
    return report


def _lowered(graph: Graph, dims: dict) -> list[dict]:
    from sdflow.codegen.traffic import lowered_traffic
    return [{"label": r.label, "op_type": r.op_type, "bytes_read": evaluate(r.bytes_read, dims),
             "bytes_written": evaluate(r.bytes_written, dims),
             "kernels": [{"label": k.label, "bytes_read": evaluate(k.bytes_read, dims),
                          "bytes_written": evaluate(k.bytes_written, dims)} for k in r.kernels]}
            for r in lowered_traffic(graph)]


# ---- formats -------------------------------------------------------------------------------------------------
def _mib(value: int) -> str:
    return f"{value / MIB:,.2f}"


def _stats(entry: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in entry.get("stats", {}).items() if v) or "-"


def _pass_rows(report: Report) -> list[list[str]]:
    rows = []
    for entry in report.passes:
        delta = entry.get("delta_bytes")
        rows.append([entry["name"], str(entry["ops"]), _mib(entry["bytes_moved"]),
                     "" if delta is None else f"{delta / MIB:+,.2f}", f"{entry['flop'] / 1e9:,.3f}",
                     _stats(entry) if "stats" in entry else ""])
    return rows


def _op_rows(report: Report, top: int) -> list[list[str]]:
    return [[o["label"], o["kernel"] or o["op_type"], _mib(o["bytes_read"]), _mib(o["bytes_written"]),
             f"{o['flop'] / 1e6:,.1f}", f"{o['intensity']:.2f}"] for o in report.ops[:top]]


def _summary(report: Report) -> str:
    before, after = report.before["bytes_moved"], report.after["bytes_moved"]
    share = f"{after / before:.1%}" if before else "-"
    dims = ", ".join(f"{k}={v}" for k, v in report.dims.items()) or "static shapes"
    return (f"{report.model} with {report.pipeline} ({dims}): {_mib(before)} MiB -> {_mib(after)} MiB moved at the "
            f"operator boundaries ({share} of the input graph's), {report.after['flop'] / 1e9:,.3f} GFLOP, "
            f"{len(report.fused)} fused kernels")


_PASS_HEAD = ["pass", "ops", "MiB moved", "Δ MiB", "GFLOP", "what fired"]
_OP_HEAD = ["op", "kernel", "MiB read", "MiB written", "MFLOP", "flop/byte"]


def format_text(report: Report, top: int = 15) -> str:
    def table(head, rows):
        widths = [max(len(str(r[i])) for r in [head, *rows]) for i in range(len(head))]
        lines = ["  ".join(str(c).ljust(w) for c, w in zip(head, widths))]
        lines += ["  ".join(str(c).ljust(w) for c, w in zip(row, widths)) for row in rows]
        return "\n".join(lines)
    parts = [_summary(report), "", "per pass:", table(_PASS_HEAD, _pass_rows(report)), "",
             f"top {top} ops by bytes moved (final graph):", table(_OP_HEAD, _op_rows(report, top))]
    if report.fused:
        parts += ["", "fused kernels:"] + [f"  {f['label']}: {f['kernel']}" for f in report.fused]
    parts += _explain_lines(report, "  ")
    if report.lowered is not None:
        parts += ["", "after lowering (DaCe memlets at each map / library call):",
                  table(["op", "kernels", "MiB read", "MiB written"], _lowered_rows(report, top))]
        parts.append(f"total after lowering: {_mib(_lowered_total(report))} MiB")
    return "\n".join(parts) + "\n"


def _lowered_rows(report: Report, top: int):
    rows = sorted(report.lowered, key=lambda r: -(r["bytes_read"] + r["bytes_written"]))[:top]
    return [[r["label"], str(len(r["kernels"])), _mib(r["bytes_read"]), _mib(r["bytes_written"])] for r in rows]


def _lowered_total(report: Report) -> int:
    return sum(r["bytes_read"] + r["bytes_written"] for r in report.lowered)


def _explain_lines(report: Report, indent: str) -> list[str]:
    lines = []
    for entry in report.passes[1:]:
        for note in entry.get("notes", []):
            lines.append(f"{indent}{entry['name']}: {note}")
    return (["", "declined (--explain):"] + lines) if lines else []


def format_markdown(report: Report, top: int = 15) -> str:
    def table(head, rows):
        out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        out += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in rows]
        return "\n".join(out)
    parts = [f"# Data movement: {report.model}", "", _summary(report) + ".", "", "## Per pass", "",
             table(_PASS_HEAD, _pass_rows(report)), "", f"## Top {top} ops by bytes moved (final graph)", "",
             table(_OP_HEAD, _op_rows(report, top))]
    if report.fused:
        parts += ["", "## Fused kernels", ""] + [f"- `{f['label']}`: {f['kernel']}" for f in report.fused]
    explained = _explain_lines(report, "- ")
    if explained:
        parts += ["", "## Declined candidates (--explain)", ""] + explained[2:]
    if report.lowered is not None:
        parts += ["", "## After lowering (DaCe memlets at each map / library call)", "",
                  table(["op", "kernels", "MiB read", "MiB written"], _lowered_rows(report, top)), "",
                  f"Total after lowering: {_mib(_lowered_total(report))} MiB."]
    return "\n".join(parts) + "\n"


def _bars(items: list[tuple[str, float]], unit: str, width: int = 640) -> str:
    """An inline SVG bar chart (no scripts, no network)."""
    if not items:
        return ""
    top = max(v for _, v in items) or 1.0
    row, label_width = 22, 260
    svg = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{label_width + width + 90}" '
           f'height="{row * len(items) + 10}" font-family="sans-serif" font-size="12">']
    for i, (label, v) in enumerate(items):
        y = 5 + i * row
        bar = max(1.0, width * v / top)
        svg.append(f'<text x="{label_width - 6}" y="{y + 14}" text-anchor="end">{html.escape(label[:40])}</text>'
                   f'<rect x="{label_width}" y="{y + 2}" width="{bar:.1f}" height="{row - 6}" fill="#3a7bd5"/>'
                   f'<text x="{label_width + bar + 4}" y="{y + 14}">{v:,.2f} {unit}</text>')
    svg.append("</svg>")
    return "".join(svg)


def format_html(report: Report, top: int = 15) -> str:
    def table(head, rows):
        cells = "".join(f"<th>{html.escape(h)}</th>" for h in head)
        body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows)
        return f"<table><tr>{cells}</tr>{body}</table>"
    pass_chart = _bars([(p["name"], p["bytes_moved"] / MIB) for p in report.passes], "MiB")
    op_chart = _bars([(f"{o['label']} ({o['kernel'] or o['op_type']})", o["bytes_moved"] / MIB)
                      for o in report.ops[:top]], "MiB")
    parts = [f"<h1>Data movement: {html.escape(report.model)}</h1>", f"<p>{html.escape(_summary(report))}</p>",
             "<h2>Bytes moved after each pass</h2>", pass_chart, table(_PASS_HEAD, _pass_rows(report)),
             f"<h2>Top {top} ops by bytes moved (final graph)</h2>", op_chart, table(_OP_HEAD, _op_rows(report, top))]
    if report.fused:
        parts += ["<h2>Fused kernels</h2><ul>"] + [f"<li><code>{html.escape(f['label'])}</code>: "
                                                    f"{html.escape(f['kernel'])}</li>" for f in report.fused] + ["</ul>"]
    explained = _explain_lines(report, "")
    if explained:
        parts += ["<h2>Declined candidates</h2><ul>"] + [f"<li>{html.escape(line)}</li>" for line in explained[2:]]
        parts.append("</ul>")
    if report.lowered is not None:
        parts += ["<h2>After lowering (DaCe memlets)</h2>",
                  table(["op", "kernels", "MiB read", "MiB written"], _lowered_rows(report, top)),
                  f"<p>Total after lowering: {_mib(_lowered_total(report))} MiB.</p>"]
    style = ("body{font-family:sans-serif;margin:2em;max-width:1100px}table{border-collapse:collapse;margin:1em 0}"
             "td,th{border:1px solid #ccc;padding:3px 8px;text-align:left}th{background:#f3f3f3}")
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>sdflow report: {html.escape(report.model)}"
            f"</title><style>{style}</style></head><body>{''.join(parts)}</body></html>\n")


def render(report: Report, fmt: str, top: int = 15) -> str:
    if fmt not in FORMATS:
        raise SdflowError(f"unknown report format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if fmt == "json":
        return report.to_json() + "\n"
    return {"text": format_text, "md": format_markdown, "html": format_html}[fmt](report, top)
