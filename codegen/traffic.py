"""Data movement after lowering: every op expanded into its maps, tasklets and BLAS calls, and for each of those
kernels the bytes of the DaCe memlets at its boundary (the propagated subsets it reads and writes), symbolic in
the model's dims. Beside the operator-boundary model (``sdflow.passes.analysis``) this shows what the generated
code touches: a reshape's copy, a GEMM epilogue's second pass over its rows, a kernel's broadcast inputs."""
from __future__ import annotations

import dataclasses

import dace
import sympy
from dace.sdfg import nodes as dnodes

from sdflow.ir import Graph
from .lowering import expand_op_nodes, lower, nested_label
from .lowering.select import select_kernels
from .options import KernelOptions

__all__ = ["KernelTraffic", "LoweredTraffic", "lowered_traffic"]


@dataclasses.dataclass(frozen=True)
class KernelTraffic:
    label: str  # the map or tasklet
    bytes_read: sympy.Expr
    bytes_written: sympy.Expr


@dataclasses.dataclass(frozen=True)
class LoweredTraffic:
    label: str
    op_type: str
    kernels: tuple[KernelTraffic, ...]

    @property
    def bytes_read(self) -> sympy.Expr:
        return sum((k.bytes_read for k in self.kernels), sympy.Integer(0))

    @property
    def bytes_written(self) -> sympy.Expr:
        return sum((k.bytes_written for k in self.kernels), sympy.Integer(0))


def lowered_traffic(graph: Graph, options: KernelOptions | None = None) -> list[LoweredTraffic]:
    """One record per op node of ``graph`` (topological order), from its expansion with the kernels ``options``
    select (as ``codegen.build`` does)."""
    graph = graph.copy()
    select_kernels(graph, options or KernelOptions())
    ops = graph.op_nodes()
    sdfg, _ = lower(graph)
    expand_op_nodes(sdfg)
    by_label = {}
    for node in sdfg.start_state.nodes():
        if isinstance(node, dnodes.NestedSDFG):
            dace.propagate_memlets_sdfg(node.sdfg)
            by_label[node.label] = tuple(_kernels(node.sdfg))
    return [LoweredTraffic(op.label, op.op_type, by_label.get(nested_label(op.label), ())) for op in ops]


def _kernels(sdfg: dace.SDFG):
    """The outermost maps and tasklets of ``sdfg`` (nested SDFGs searched through), with their memlet bytes."""
    for state in sdfg.states():
        scopes = state.scope_dict()
        for node in state.nodes():
            if scopes[node] is not None:
                continue
            if isinstance(node, dnodes.NestedSDFG):
                yield from _kernels(node.sdfg)
            elif isinstance(node, dnodes.MapEntry):
                exit_node = state.exit_node(node)
                yield KernelTraffic(node.map.label, _bytes(sdfg, state.in_edges(node)),
                                    _bytes(sdfg, state.out_edges(exit_node)))
            elif isinstance(node, dnodes.Tasklet):
                yield KernelTraffic(node.label, _bytes(sdfg, state.in_edges(node)), _bytes(sdfg, state.out_edges(node)))


def _bytes(sdfg: dace.SDFG, edges) -> sympy.Expr:
    total = sympy.Integer(0)
    for edge in edges:
        memlet = edge.data
        if memlet.is_empty() or memlet.data is None:
            continue
        elements = memlet.subset.num_elements() if memlet.subset is not None else memlet.volume
        total += sympy.sympify(elements) * sdfg.arrays[memlet.data].dtype.bytes
    return total
