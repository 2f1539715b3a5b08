"""If and Loop as SDFG control flow. Each becomes a nested SDFG whose states run the lowered subgraphs (each a
nested SDFG of its own). If enters one state per branch on the condition's value and joins after them. Loop copies
the loop-carried values into their storage, then a DaCe LoopRegion counts up to the trip count and breaks once
the condition is false; each iteration runs the body state, then an update state that moves the new loop-carried
values into place and writes the scan outputs' row.

Subgraph constants are hoisted into the outer graph before its weights are taken (``hoist_branch_constants``), so
they are passed to the native code as arguments like every other weight, never baked into the code."""
from __future__ import annotations

import dace
from dace.sdfg.state import BreakBlock, ConditionalBlock, ControlFlowRegion, LoopRegion

from sdflow.ir import CompileError, Graph
from sdflow.ir.ops.control import BRANCHES, SUBGRAPHS, branch_graph, loop_counts, serialise_branch
from ._expansion import Ctx, bind_static_inputs, expansion

__all__ = ["hoist_branch_constants"]


def hoist_branch_constants(graph: Graph) -> None:
    """Every constant of an If branch or a Loop body becomes a constant of ``graph`` read by the node through a
    connector of its own (``<subgraph>_w<k>``), and an input of the subgraph named after that connector."""
    state = graph.state
    for node in graph.op_nodes():
        if node.domain_name or node.op_type not in SUBGRAPHS:
            continue
        for branch in SUBGRAPHS[node.op_type]:
            inner = branch_graph(node, branch)
            bind_static_inputs(inner)  # shape-like inputs keep their compile-time values once constants are inputs
            for k, name in enumerate(list(inner.constants)):
                connector = f"{branch}_w{k}"
                outer = graph.add_constant(f"{node.label}_{connector}", inner.constant(name))
                node.add_in_connector(connector)
                node.onnx_inputs = list(node.onnx_inputs) + [connector]
                state.add_edge(state.add_read(outer), None, node, connector,
                               dace.Memlet.from_array(outer, graph.sdfg.arrays[outer]))
                inner.sdfg.constants_prop.pop(name)
                inner.sdfg.arrays[name].location["onnx_name"] = connector
                inner.sdfg.arg_names = [name] + list(inner.sdfg.arg_names)
            setattr(node, node.attribute_names[branch], serialise_branch(inner))


def _lowered(ctx: Ctx, branch: str) -> dace.SDFG:
    from . import lower  # (this module is imported by the package that defines lower)
    inner, weights = lower(branch_graph(ctx.node, branch))
    if weights:
        raise CompileError(f"{ctx.node.op_type} {ctx.node.label!r}: {branch} still has constants (not hoisted?)")
    return inner


def _call(sdfg: dace.SDFG, state: dace.SDFGState, inner: dace.SDFG, reads: dict, writes: list) -> None:
    """Runs the lowered subgraph ``inner`` in ``state``: each input reads ``reads[its ONNX name]``, output k writes
    ``writes[k]`` (an array of ``sdfg``, or None: the output stays inside). ``reads`` may name access nodes of
    ``state`` instead of arrays (values written earlier in the state)."""
    subgraph = Graph(inner)
    inputs, outputs = subgraph.inputs, subgraph.outputs
    written = {}
    for name, target in zip(outputs, writes):
        if target is None:
            inner.arrays[name].transient = True
        else:
            written[name] = target
    inner.arg_names = [n for n in inner.arg_names if not inner.arrays[n].transient]
    call = state.add_nested_sdfg(inner, set(inputs), set(written), symbol_mapping={s: s for s in inner.free_symbols})
    for name in inputs:
        source = reads[subgraph.onnx_name(name)]
        access = source if isinstance(source, dace.nodes.AccessNode) else state.add_read(source)
        state.add_edge(access, None, call, name, dace.Memlet.from_array(access.data, sdfg.arrays[access.data]))
    for name, target in written.items():
        state.add_edge(call, name, state.add_write(target), None, dace.Memlet.from_array(target, sdfg.arrays[target]))


@expansion("If")
def if_(ctx: Ctx):
    sdfg, decide = ctx.nested()
    join = sdfg.add_state("join")
    taken = f"{ctx.connector('in', 0)}[0]"
    reads = {c: c for c in ctx.inputs}
    writes = [ctx.connector("out", k) for k in range(len(ctx.node.onnx_outputs))]
    for branch, condition in zip(BRANCHES, (taken, f"not {taken}")):
        state = sdfg.add_state(branch)
        _call(sdfg, state, _lowered(ctx, branch), reads, writes)
        sdfg.add_edge(decide, state, dace.InterstateEdge(condition=condition))
        sdfg.add_edge(state, join, dace.InterstateEdge())
    return sdfg


def _copy(state: dace.SDFGState, sdfg: dace.SDFG, source: str, target: str, subset: str | None = None) -> None:
    """``target`` (or its ``subset``) = ``source``."""
    memlet = dace.Memlet.from_array(source, sdfg.arrays[source]) if subset is None else \
        dace.Memlet(data=target, subset=subset, other_subset=dace.subsets.Range.from_array(sdfg.arrays[source]))
    state.add_nedge(state.add_read(source), state.add_write(target), memlet)


def _scalar(state: dace.SDFGState, name: str, value: str) -> None:
    tasklet = state.add_tasklet(f"set_{name}", {}, {"out"}, f"out = {value}")
    state.add_edge(tasklet, "out", state.add_write(name), None, dace.Memlet(f"{name}[0]"))


@expansion("Loop")
def loop(ctx: Ctx):
    node = ctx.node
    sdfg, init = ctx.nested()
    carried, _ = loop_counts(node)
    outputs = len(node.onnx_outputs)
    sdfg.add_symbol("it_", dace.int64)
    sdfg.add_array("go_", [1], dace.bool_, transient=True)
    sdfg.add_array("go_next_", [1], dace.bool_, transient=True)
    sdfg.add_array("iteration_", [1], dace.int64, transient=True)
    stores, nexts = [], []
    for k in range(carried):
        desc = sdfg.arrays[f"carried_{k}"]
        store = ctx.connector("out", k) or sdfg.add_array(f"state_{k}", desc.shape, desc.dtype, transient=True)[0]
        nexts.append(sdfg.add_array(f"next_{k}", desc.shape, desc.dtype, transient=True)[0])
        stores.append(store)
        _copy(init, sdfg, f"carried_{k}", store)
    scans = [ctx.connector("out", k) for k in range(carried, outputs)]
    rows = [sdfg.add_array(f"row_{j}", sdfg.arrays[s].shape[1:], sdfg.arrays[s].dtype, transient=True)[0]
            if s else None for j, s in enumerate(scans)]
    cond = ctx.connector("in", 1)
    if cond:
        _copy(init, sdfg, cond, "go_")
    else:
        _scalar(init, "go_", "True")

    trip = ctx.connector("in", 0)
    # A counted loop (DaCe needs a plain bound on its loop variable) that breaks once the condition is false;
    # without a trip count it is bounded by the largest int64.
    sdfg.add_symbol("trip_", dace.int64)
    region = LoopRegion("loop", condition_expr="it_ < trip_", loop_var="it_", initialize_expr="it_ = 0",
                        update_expr="it_ = it_ + 1", sdfg=sdfg)
    sdfg.add_node(region)
    sdfg.add_edge(init, region, dace.InterstateEdge(assignments={"trip_": f"{trip}[0]" if trip else str(2**63 - 1)}))
    stop = ConditionalBlock("stop", sdfg=sdfg, parent=region)
    region.add_node(stop, is_start_block=True)
    leave = ControlFlowRegion("leave", sdfg=sdfg, parent=stop)
    leave.add_node(BreakBlock("break"), is_start_block=True)
    stop.add_branch("not go_[0]", leave)
    body = region.add_state("body")
    update = region.add_state("update")
    region.add_edge(stop, body, dace.InterstateEdge())
    region.add_edge(body, update, dace.InterstateEdge())

    iteration = body.add_access("iteration_")
    tasklet = body.add_tasklet("iteration_number", {}, {"out"}, "out = it_")
    body.add_edge(tasklet, "out", iteration, None, dace.Memlet("iteration_[0]"))
    reads = {**{c: c for c in ctx.inputs}, "iteration": iteration, "condition": "go_",
             **{f"carried_{k}": store for k, store in enumerate(stores)}}
    _call(sdfg, body, _lowered(ctx, "body"), reads, ["go_next_"] + nexts + rows)

    _copy(update, sdfg, "go_next_", "go_")
    for store, following in zip(stores, nexts):
        _copy(update, sdfg, following, store)
    for scan, row in zip(scans, rows):
        if scan:
            subset = ", ".join(["it_"] + [f"0:{d}" for d in sdfg.arrays[scan].shape[1:]])
            _copy(update, sdfg, row, scan, subset)
    return sdfg
