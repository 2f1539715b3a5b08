"""fuse-elementwise: any connected DAG of element-wise (and broadcasting) ops  =>  one Fused map that reads each
input once and writes only the values used outside it."""
from __future__ import annotations

import dataclasses

from sdflow.ir import Graph
from ..infra import Pass, PassContext, PassResult, register_pass
from ._rewrite import Topology, fuse_nodes, is_elementwise


@register_pass
@dataclasses.dataclass(frozen=True)
class FuseElementwise(Pass):
    """Connected element-wise ops (Add, Mul, Erf, Where, ...)  =>  one Fused element-wise kernel."""

    name = "fuse-elementwise"
    max_ops: int = 64  # a larger group is split (very long tasklets compile slowly)

    def apply(self, graph: Graph, ctx: PassContext) -> PassResult:
        topology = Topology(graph)
        position = {node: k for k, node in enumerate(topology.order)}
        group_of: dict = {}
        notes = []
        for node in topology.order:
            if not is_elementwise(graph, node):
                continue
            group = [node]
            for tensor in filter(None, graph.node_inputs(node)):
                producer = topology.producer.get(tensor)
                other = group_of.get(producer)
                if other is None or other is group:
                    continue
                candidate = sorted(other + group, key=position.__getitem__)
                reason = self._decline(graph, topology, candidate)
                if reason:
                    notes.append(f"{producer.label} -> {node.label}: not fused, {reason}")
                    continue
                group = candidate
                for member in group:
                    group_of[member] = group
            group_of[node] = group
        groups = {id(g): g for g in group_of.values() if len(g) > 1}.values()
        for group in groups:
            fuse_nodes(graph, topology, group, f"fused_{group[-1].label}")
        fused_ops = sum(len(g) for g in groups)
        return PassResult(bool(groups), {"fused_kernels": len(groups), "fused_ops": fused_ops},
                          notes if ctx.explain else [])

    def _decline(self, graph: Graph, topology: Topology, candidate) -> str | None:
        if len(candidate) > self.max_ops:
            return f"the group would exceed max_ops={self.max_ops}"
        members = set(candidate)
        shapes = {graph.tensor_type(t).shape for m in candidate for t in graph.node_outputs(m)
                  if t and topology.escapes(t, members)}
        if len(shapes) > 1:
            return "values used outside the group would have different shapes (one map writes one shape)"
        if topology.creates_cycle(members):
            return "a path through other ops leads from the group back into it"
        return None
