"""fold-shape-inputs: shape-like inputs whose values are known at compile time (constants, or shape arithmetic
on symbolic dims) become part of the op, so the subgraph that computed them can die."""
from __future__ import annotations

import dataclasses

from sdflow.ir import Graph, known_values, semantics_of
from ..infra import Pass, PassContext, PassResult, register_pass


@register_pass
@dataclasses.dataclass(frozen=True)
class FoldShapeInputs(Pass):
    """Reshape(x, Concat(Shape(x)[0], 768))  =>  Reshape[shape=(batch, 768)](x)  (likewise Slice, Expand, ...)."""

    name = "fold-shape-inputs"

    def apply(self, graph: Graph, ctx: PassContext) -> PassResult:
        values = known_values(graph)
        folded, notes = 0, []
        for node in graph.op_nodes():
            inputs = graph.node_inputs(node)
            for position in semantics_of(node).value_inputs:
                tensor = inputs[position] if position < len(inputs) else None
                if tensor is None:
                    continue
                if tensor not in values:
                    notes.append(f"{node.label}: input {position} ({tensor}) is only known at run time")
                    continue
                node.set_static_input(position, values[tensor])
                graph.disconnect_input(node, position)
                folded += 1
        return PassResult(folded > 0, {"folded_inputs": folded}, notes if ctx.explain else [])
