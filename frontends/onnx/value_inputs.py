"""Graph inputs whose *values* (not only shapes) decide output shapes: a Reshape's shape, a Slice's starts, a
reduction's axes, ... given as graph inputs rather than constants. sdflow needs those values at compile time."""
from __future__ import annotations

import onnx

from sdflow.ir import lookup_op

__all__ = ["value_dependent_inputs"]


def value_dependent_inputs(model: onnx.ModelProto) -> list[str]:
    """The names of the graph inputs that feed a shape-like input position of some op, in graph order."""
    opsets = {entry.domain if entry.domain != "ai.onnx" else "": entry.version for entry in model.opset_import}
    initializers = {i.name for i in model.graph.initializer}
    graph_inputs = [i.name for i in model.graph.input if i.name not in initializers]
    feeding = set()
    for node in model.graph.node:
        domain = node.domain if node.domain != "ai.onnx" else ""
        spec = lookup_op(domain, node.op_type, opsets.get(domain, 1))
        if spec is None:
            continue
        for position in spec.semantics.value_inputs:
            if position < len(node.input) and node.input[position]:
                feeding.add(node.input[position])
    return [name for name in graph_inputs if name in feeding]
