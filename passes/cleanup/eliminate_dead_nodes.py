"""eliminate-dead-nodes: ops none of whose outputs reach a graph output are removed, with the constants and
tensors only they used."""
from __future__ import annotations

import dataclasses

from sdflow.ir import Graph
from ..infra import Pass, PassContext, PassResult, register_pass


@register_pass
@dataclasses.dataclass(frozen=True)
class EliminateDeadNodes(Pass):
    """Ops whose results are never read (transitively) by a graph output  =>  removed."""

    name = "eliminate-dead-nodes"

    def apply(self, graph: Graph, ctx: PassContext) -> PassResult:
        removed = 0
        changed = True
        while changed:
            changed = False
            for node in reversed(graph.op_nodes()):
                results = [t for t in graph.node_outputs(node) if t]
                if any(t in graph.sdfg.arg_names or graph.consumers(t) for t in results):
                    continue
                graph.remove_op(node)
                removed += 1
                changed = True
        unused = [name for name in graph.constants if not any(a.data == name for a in graph.state.data_nodes())]
        for name in unused:
            graph.remove_tensor_if_unused(name)
        return PassResult(bool(removed or unused), {"removed_ops": removed, "removed_constants": len(unused)})
