"""If, Loop and Scan as SDFG control flow. Each becomes a nested SDFG whose states run the lowered subgraphs (each a
nested SDFG of its own). If enters one state per branch on the condition's value and joins after them. Loop copies
the loop-carried values into their storage, then a DaCe LoopRegion counts up to the trip count and breaks once
the condition is false; each iteration runs the body state, then an update state that moves the new loop-carried
values into place and writes the scan outputs' row. Scan is the same counted loop over the scanned inputs'
length, copying one slice of each (forwards or backwards) into the body.

Subgraph constants are hoisted into the outer graph before its weights are taken (``hoist_branch_constants``), so
they are passed to the native code as arguments like every other weight, never baked into the code."""
from __future__ import annotations

import dace
from dace.sdfg.state import BreakBlock, ConditionalBlock, ControlFlowRegion, LoopRegion

from sdflow.ir import CompileError, Graph
from sdflow.ir.ops.control import (BRANCHES, SCAN_INPUTS, SUBGRAPHS, branch_graph, loop_counts, scan_layout,
                                   serialise_branch)
from ._expansion import Ctx, bind_static_inputs, expansion

__all__ = ["hoist_branch_constants"]


def hoist_branch_constants(graph: Graph) -> None:
    """Every constant of an If branch or a Loop/Scan body (nested ones' included) becomes a constant of ``graph``
    read by the node through a connector of its own (``<subgraph>_w<k>``), and an input of the subgraph named after
    that connector."""
    state = graph.state
    for node in graph.op_nodes():
        if node.domain_name or node.op_type not in SUBGRAPHS:
            continue
        for branch in SUBGRAPHS[node.op_type]:
            inner = branch_graph(node, branch)
            hoist_branch_constants(inner)  # a nested If/Loop's constants first become this subgraph's
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


def _copy(state: dace.SDFGState, sdfg: dace.SDFG, source: str, target: str, subset: str | None = None,
          source_subset: str | None = None) -> dace.nodes.AccessNode:
    """``target`` (or its ``subset``) = ``source`` (or its ``source_subset``); returns the written access node."""
    if subset is not None:
        memlet = dace.Memlet(data=target, subset=subset,
                             other_subset=dace.subsets.Range.from_array(sdfg.arrays[source]))
    elif source_subset is not None:
        memlet = dace.Memlet(data=source, subset=source_subset,
                             other_subset=dace.subsets.Range.from_array(sdfg.arrays[target]))
    else:
        memlet = dace.Memlet.from_array(source, sdfg.arrays[source])
    written = state.add_write(target)
    state.add_nedge(state.add_read(source), written, memlet)
    return written


def _at(shape, axis: int, index: str) -> str:
    """The subset of one slice at ``index`` along ``axis`` of an array of ``shape``."""
    return ", ".join(index if a == axis else f"0:{d}" for a, d in enumerate(shape))


def _counted_loop(sdfg: dace.SDFG, init: dace.SDFGState, trip: str, stop: str | None = None):
    """A LoopRegion after ``init`` counting ``it_`` from 0 while below ``trip`` (DaCe needs a plain bound on its
    loop variable), leaving early once ``stop`` holds; returns its body and update states."""
    sdfg.add_symbol("it_", dace.int64)
    sdfg.add_symbol("trip_", dace.int64)
    region = LoopRegion("loop", condition_expr="it_ < trip_", loop_var="it_", initialize_expr="it_ = 0",
                        update_expr="it_ = it_ + 1", sdfg=sdfg)
    sdfg.add_node(region)
    sdfg.add_edge(init, region, dace.InterstateEdge(assignments={"trip_": trip}))
    body = region.add_state("body", is_start_block=stop is None)
    update = region.add_state("update")
    region.add_edge(body, update, dace.InterstateEdge())
    if stop is not None:
        check = ConditionalBlock("stop", sdfg=sdfg, parent=region)
        region.add_node(check, is_start_block=True)
        leave = ControlFlowRegion("leave", sdfg=sdfg, parent=check)
        leave.add_node(BreakBlock("break"), is_start_block=True)
        check.add_branch(stop, leave)
        region.add_edge(check, body, dace.InterstateEdge())
    return body, update


def _states(ctx: Ctx, sdfg: dace.SDFG, init: dace.SDFGState, initial: list[str]) -> tuple[list[str], list[str]]:
    """Storage for values threaded through the iterations: output k where connected, else a transient, filled
    from ``initial[k]`` in ``init``; and a transient per value for the body's next one."""
    stores, nexts = [], []
    for k, source in enumerate(initial):
        desc = sdfg.arrays[source]
        store = ctx.connector("out", k) or sdfg.add_array(f"state_{k}", desc.shape, desc.dtype, transient=True)[0]
        nexts.append(sdfg.add_array(f"next_{k}", desc.shape, desc.dtype, transient=True)[0])
        stores.append(store)
        _copy(init, sdfg, source, store)
    return stores, nexts


def _scalar(state: dace.SDFGState, name: str, value: str) -> None:
    tasklet = state.add_tasklet(f"set_{name}", {}, {"out"}, f"out = {value}")
    state.add_edge(tasklet, "out", state.add_write(name), None, dace.Memlet(f"{name}[0]"))


@expansion("Loop")
def loop(ctx: Ctx):
    node = ctx.node
    sdfg, init = ctx.nested()
    carried, _ = loop_counts(node)
    sdfg.add_array("go_", [1], dace.bool_, transient=True)
    sdfg.add_array("go_next_", [1], dace.bool_, transient=True)
    sdfg.add_array("iteration_", [1], dace.int64, transient=True)
    stores, nexts = _states(ctx, sdfg, init, [f"carried_{k}" for k in range(carried)])
    scans = [ctx.connector("out", k) for k in range(carried, len(node.onnx_outputs))]
    rows = [sdfg.add_array(f"row_{j}", sdfg.arrays[s].shape[1:], sdfg.arrays[s].dtype, transient=True)[0]
            if s else None for j, s in enumerate(scans)]
    cond, trip = ctx.connector("in", 1), ctx.connector("in", 0)
    if cond:
        _copy(init, sdfg, cond, "go_")
    else:
        _scalar(init, "go_", "True")
    # Without a trip count the loop is bounded by the largest int64 only.
    body, update = _counted_loop(sdfg, init, f"{trip}[0]" if trip else str(2**63 - 1), stop="not go_[0]")

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
            _copy(update, sdfg, row, scan, _at(sdfg.arrays[scan].shape, 0, "it_"))
    return sdfg


@expansion("Scan")
def scan(ctx: Ctx):
    node = ctx.node
    sdfg, init = ctx.nested()
    own = [c for c in node.onnx_inputs if c.startswith(SCAN_INPUTS)]
    states, axes, directions, out_axes, out_directions = scan_layout(node, [len(ctx.shape(c)) for c in own])
    stores, nexts = _states(ctx, sdfg, init, own[:states])
    length = ctx.shape(own[states])[axes[0]]
    body, update = _counted_loop(sdfg, init, str(length))

    def step(reverse: bool) -> str:
        return f"{length} - 1 - it_" if reverse else "it_"

    reads = {c: c for c in ctx.inputs}
    reads.update({f"state_{k}": store for k, store in enumerate(stores)})
    for j, (source, axis) in enumerate(zip(own[states:], axes)):
        shape = ctx.shape(source)
        sdfg.add_array(f"slice_{j}", [d for a, d in enumerate(shape) if a != axis] or [1],  # (rank 0 is [1])
                       sdfg.arrays[source].dtype, transient=True)
        reverse = j < len(directions) and directions[j]
        reads[f"scan_{j}"] = _copy(body, sdfg, source, f"slice_{j}", source_subset=_at(shape, axis, step(reverse)))
    outputs = [ctx.connector("out", k) for k in range(states, len(node.onnx_outputs))]
    rows = []
    for k, target in enumerate(outputs):
        axis = out_axes[k] if k < len(out_axes) else 0
        shape = ctx.shape(target) if target else None
        rows.append(sdfg.add_array(f"row_{k}", [d for a, d in enumerate(shape) if a != axis % len(shape)] or [1],
                                   sdfg.arrays[target].dtype, transient=True)[0] if target else None)
    _call(sdfg, body, _lowered(ctx, "body"), reads, nexts + rows)

    for store, following in zip(stores, nexts):
        _copy(update, sdfg, following, store)
    for k, (target, row) in enumerate(zip(outputs, rows)):
        if target:
            shape = ctx.shape(target)
            axis = (out_axes[k] if k < len(out_axes) else 0) % len(shape)
            reverse = k < len(out_directions) and out_directions[k]
            _copy(update, sdfg, row, target, _at(shape, axis, step(reverse)))
    return sdfg
