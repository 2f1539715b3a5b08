"""If as SDFG control flow: the op becomes a nested SDFG with a state per branch, each running its branch's lowered
graph (a nested SDFG of its own), entered on the condition's value and joined in a final state.

Branch constants are hoisted into the outer graph before its weights are taken (``hoist_branch_constants``), so
they are passed to the native code as arguments like every other weight, never baked into the code."""
from __future__ import annotations

import dace

from sdflow.ir import CompileError, Graph
from sdflow.ir.ops.control import BRANCHES, branch_graph, serialise_branch
from ._expansion import Ctx, expansion

__all__ = ["hoist_branch_constants"]


def hoist_branch_constants(graph: Graph) -> None:
    """Every constant of an If branch becomes a constant of ``graph`` read by the If node through a connector of
    its own (``<branch>_w<k>``), and an input of the branch named after that connector."""
    state = graph.state
    for node in graph.op_nodes():
        if node.op_type != "If" or node.domain_name:
            continue
        for branch in BRANCHES:
            inner = branch_graph(node, branch)
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


@expansion("If")
def if_(ctx: Ctx):
    from . import lower  # (this module is imported by the package that defines lower)
    sdfg, decide = ctx.nested()
    join = sdfg.add_state("join")
    taken = f"{ctx.connector('in', 0)}[0]"
    for branch, condition in zip(BRANCHES, (taken, f"not {taken}")):
        state = sdfg.add_state(branch)
        inner, weights = lower(branch_graph(ctx.node, branch))
        if weights:
            raise CompileError(f"If {ctx.node.label!r}: {branch} still has constants (were they hoisted?)")
        _call(ctx, sdfg, state, inner)
        sdfg.add_edge(decide, state, dace.InterstateEdge(condition=condition))
        sdfg.add_edge(state, join, dace.InterstateEdge())
    return sdfg


def _call(ctx: Ctx, sdfg: dace.SDFG, state: dace.SDFGState, inner: dace.SDFG) -> None:
    """Runs ``inner`` (a lowered branch) in ``state``: its inputs read the If's connectors of their ONNX names, its
    outputs write the If's outputs by position (an output nobody reads stays inside the branch)."""
    branch = Graph(inner)
    inputs, outputs = branch.inputs, branch.outputs
    written = {}
    for position, name in enumerate(outputs):
        connector = ctx.connector("out", position)
        if connector is None:
            inner.arrays[name].transient = True
        else:
            written[name] = connector
    inner.arg_names = [n for n in inner.arg_names if not inner.arrays[n].transient]
    call = state.add_nested_sdfg(inner, set(inputs), set(written),
                                 symbol_mapping={s: s for s in inner.free_symbols})
    for name in inputs:
        connector = branch.onnx_name(name)
        state.add_edge(state.add_read(connector), None, call, name,
                       dace.Memlet.from_array(connector, sdfg.arrays[connector]))
    for name, connector in written.items():
        state.add_edge(call, name, state.add_write(connector), None,
                       dace.Memlet.from_array(connector, sdfg.arrays[connector]))
