"""Graph inputs whose *values* (not only shapes) decide output shapes: a Reshape's shape, a Slice's starts, a
reduction's axes, ... given as graph inputs rather than constants. sdflow needs those values at compile time."""
from __future__ import annotations

import onnx

from sdflow.ir import lookup_op

__all__ = ["value_dependent_inputs"]

_SHAPE_ONLY = {"Shape", "Size"}  # ops whose outputs depend on their input's shape, not its values


def value_dependent_inputs(model: onnx.ModelProto) -> list[str]:
    """The names of the graph inputs whose values reach a shape-like input position of some op, directly or
    through other ops (Shape and Size read only shapes, so the search stops there), in graph order."""
    opsets = {entry.domain if entry.domain != "ai.onnx" else "": entry.version for entry in model.opset_import}
    initializers = {i.name for i in model.graph.initializer}
    graph_inputs = [i.name for i in model.graph.input if i.name not in initializers]
    producers = {name: node for node in model.graph.node for name in node.output}
    pending = []
    for node in model.graph.node:
        domain = node.domain if node.domain != "ai.onnx" else ""
        spec = lookup_op(domain, node.op_type, opsets.get(domain, 1))
        if spec is not None:
            pending += [node.input[p] for p in spec.semantics.value_inputs if p < len(node.input) and node.input[p]]
    reached = set()
    while pending:
        name = pending.pop()
        if name in reached:
            continue
        reached.add(name)
        producer = producers.get(name)
        if producer is not None and producer.op_type not in _SHAPE_ONLY:
            pending += [i for i in producer.input if i]
    return [name for name in graph_inputs if name in reached]
