"""sdflow's ops against ONNX Runtime's nodes, in the whole model: DaCe's instrumentation of an instrumented build
(the same timings as ``sdflow bench``'s top ops) next to ONNX Runtime's own profiler, per op, matched by the tensors
they write. Per-layer benchmarks (benchmarks/conv_layers.py) time each layer alone, where ONNX Runtime also pays
for converting to and from its blocked NCHWc layout; inside a whole model it does that once, so this is where the
gap per op shows.

    python benchmarks/ort_nodes.py [MODEL] [--threads 2] [--runs 20] [--top 30] [--reduced]

MODEL: a zoo name (exported with ``sdflow zoo``) or an ONNX file. Prints one Markdown row per sdflow op (its
median ms, the matched ONNX Runtime nodes' median ms and the difference), the largest differences first, then the
totals and ONNX Runtime's nodes that match no sdflow op (layout conversions, nodes it fused differently).
Both runtimes run in one process, ONNX Runtime after a pause (its idle workers spin after a run).
"""
from __future__ import annotations

import argparse
import collections
import json
import pathlib
import statistics
import sys
import tempfile
import time


def ort_node_times(session_factory, feeds: dict, runs: int) -> tuple[dict[str, float], dict[str, list[str]]]:
    """ONNX Runtime's median kernel time per node (ms) over ``runs`` calls, and each node's output names (from the
    graph it optimised). ``session_factory(profile_prefix, optimized_path)`` makes the session."""
    import onnx
    with tempfile.TemporaryDirectory(prefix="sdflow-ort-nodes-") as folder:
        optimized = str(pathlib.Path(folder) / "optimized.onnx")
        session = session_factory(str(pathlib.Path(folder) / "profile"), optimized)
        for _ in range(3):
            session.run(None, feeds)
        time.sleep(0.2)
        for _ in range(runs):
            session.run(None, feeds)
        events = json.loads(pathlib.Path(session.end_profiling()).read_text())
        outputs = {node.name: list(node.output) for node in onnx.load(optimized).graph.node}
    durations = collections.defaultdict(list)
    for event in events:
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
            durations[event["name"][:-len("_kernel_time")]].append(event["dur"])
    # The first three runs are warm-up.
    return ({name: statistics.median(values[3:] or values) / 1e3 for name, values in durations.items()}, outputs)


def match(ops: list, op_outputs: dict[str, list[str]], node_times: dict[str, float],
          node_outputs: dict[str, list[str]]) -> tuple[list[tuple], dict[str, float]]:
    """Pairs each sdflow op (an OpTime) with the ONNX Runtime nodes that write one of its outputs. ORT's NCHWc
    nodes write renamed tensors and are named after the original output plus '_nchwc'. Returns rows
    (label, op_type, sdflow ms, ORT ms or None, ORT node names) and the ORT nodes left unmatched."""
    writers = collections.defaultdict(list)
    for name in node_times:
        keys = list(node_outputs.get(name, []))
        if name.endswith("_nchwc"):
            keys.append(name[:-len("_nchwc")])
        for key in keys:
            writers[key].append(name)
    rows, used = [], set()
    for op in ops:
        nodes = sorted({n for out in op_outputs.get(op.label, []) for n in writers.get(out, []) if n not in used})
        used.update(nodes)
        rows.append((op.label, op.op_type, op.milliseconds, sum(node_times[n] for n in nodes) if nodes else None,
                     nodes))
    return rows, {name: t for name, t in node_times.items() if name not in used}


def absorbed_tensors(onnx_nodes, op_outputs: dict[str, list[str]]) -> dict[str, str]:
    """The model's tensors that no sdflow op writes (a fused kernel keeps them inside, e.g. the expanded tensor of
    fuse-conv-depthwise), each with the op that does write the first tensor after it: ONNX Runtime's nodes that
    write them count against that op."""
    writer = {tensor: label for label, tensors in op_outputs.items() for tensor in tensors}
    consumers: dict[str, list] = collections.defaultdict(list)
    for node in onnx_nodes:
        for tensor in node.input:
            consumers[tensor].append(node)

    def owner(tensor: str, seen: set) -> str | None:
        if tensor in writer:
            return writer[tensor]
        seen.add(tensor)
        for node in consumers.get(tensor, []):
            for out in node.output:
                if out and out not in seen and (found := owner(out, seen)):
                    return found
        return None
    result = {}
    for node in onnx_nodes:
        for tensor in node.output:
            if tensor and tensor not in writer and (found := owner(tensor, set())):
                result[tensor] = found
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", nargs="?", default="mobilenet_v2")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument("--reduced", action="store_true", help="zoo models: the 2-layer variants")
    args = parser.parse_args(argv)

    from sdflow.bench import pin_threads
    pin_threads(args.threads)  # before any native library loads
    from sdflow import api, zoo
    from sdflow.bench import _feeds
    from sdflow.ort import ort_session

    path = zoo.resolve(args.model, args.reduced) if args.model in zoo.ENTRIES else args.model
    defaults = zoo.ENTRIES[args.model].default_dims if args.model in zoo.ENTRIES else {"batch": 1, "seq": zoo.SEQUENCE}
    compiled = api.compile(path, passes="O2", instrument=True)
    feeds = _feeds(compiled, {}, defaults)
    ops = compiled.profile(**feeds, runs=args.runs)
    # The tensors each op writes; a fused op (labelled '<kind>_<first ONNX node>') also by its first node's
    # outputs, which ONNX Runtime's fused nodes are named after.
    import onnx
    onnx_nodes = list(onnx.load(path, load_external_data=False).graph.node)
    onnx_outputs = {node.name: list(node.output) for node in onnx_nodes}
    op_outputs = {n.label: list(compiled.graph.node_outputs(n)) + onnx_outputs.get(n.label.split("_", 1)[-1], [])
                  for n in compiled.graph.op_nodes()}
    for tensor, label in absorbed_tensors(onnx_nodes, op_outputs).items():
        op_outputs[label].append(tensor)
    time.sleep(0.2)
    node_times, node_outputs = ort_node_times(
        lambda prefix, optimized: ort_session(path, args.threads, profile_prefix=prefix, optimized_path=optimized),
        feeds, args.runs)
    rows, unmatched = match(ops, op_outputs, node_times, node_outputs)

    print(f"{args.model}: {args.threads} threads, median of {args.runs} runs per op\n")
    print("| sdflow op | type | sdflow ms | onnxruntime ms | difference ms | onnxruntime nodes |\n"
          "|---|---|---:|---:|---:|---|")
    rows.sort(key=lambda r: -(r[2] - (r[3] or 0.0)))
    for label, op_type, ours, theirs, nodes in rows[:args.top]:
        shown = ", ".join(nodes[:3]) + (f" (+{len(nodes) - 3})" if len(nodes) > 3 else "")
        print(f"| {label} | {op_type} | {ours:.3f} | {'-' if theirs is None else f'{theirs:.3f}'} | "
              f"{ours - (theirs or 0.0):+.3f} | {shown} |")
    matched = [r for r in rows if r[3] is not None]
    print(f"\nsdflow ops: {sum(r[2] for r in rows):.2f} ms ({len(rows)} ops; {len(matched)} matched: "
          f"{sum(r[2] for r in matched):.2f} ms against ONNX Runtime's {sum(r[3] for r in matched):.2f} ms)")
    print(f"onnxruntime nodes: {sum(node_times.values()):.2f} ms ({len(node_times)} nodes; unmatched "
          f"{sum(unmatched.values()):.2f} ms: " + ", ".join(
              f"{n} {t:.3f}" for n, t in sorted(unmatched.items(), key=lambda kv: -kv[1])[:8]) + ")")
    return 0


if __name__ == "__main__":
    sys.exit(main())
