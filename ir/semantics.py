"""Per-node semantics over a whole graph: the op spec of a node, type re-inference, compile-time values."""
from __future__ import annotations

import numpy as np

from .errors import ShapeInferenceError, VerificationError
from .graph import Graph
from .nodes import OpNode
from .registry import lookup_op
from .types import TensorType

__all__ = ["semantics_of", "infer_node", "known_values", "evaluate_node", "with_static_inputs"]


def semantics_of(node: OpNode):
    spec = lookup_op(node.domain_name, node.op_type, node.opset)
    if spec is None:
        raise VerificationError(f"node {node.label!r}: no op registered for {node.op_type} at opset {node.opset}")
    return spec.semantics


def infer_node(node: OpNode, inputs: list[TensorType | None], values: list) -> list[TensorType]:
    """Output types of ``node``; errors name the node and op."""
    try:
        return semantics_of(node).infer(node, inputs, values)
    except ShapeInferenceError as error:
        raise ShapeInferenceError(f"node {node.label!r} ({node.op_type}, opset {node.opset}): {error}") from None


def with_static_inputs(node: OpNode, values: list) -> list:
    """``values`` by ONNX input position, with the node's compile-time (folded) inputs filled in."""
    values = list(values) + [None] * (len(node.onnx_inputs) - len(values))
    for position in range(len(values)):
        static = node.static_input(position)
        if static is not None:
            values[position] = static
    return values


def evaluate_node(node: OpNode, arrays: list) -> list[np.ndarray]:
    """Runs the numpy reference of ``node`` (the test oracle)."""
    return semantics_of(node).reference(node, *with_static_inputs(node, arrays))


def known_values(graph: Graph) -> dict[str, np.ndarray]:
    """Values known at compile time: constants, and small shape-arithmetic results (possibly symbolic)."""
    values = dict(graph.constants)
    for node in graph.op_nodes():
        inputs = graph.node_inputs(node)
        types = [graph.tensor_type(t) if t else None for t in inputs]
        inputs_known = with_static_inputs(node, [values.get(t) if t else None for t in inputs])
        results = semantics_of(node).known_values(node, types, inputs_known)
        for tensor, value in zip(graph.node_outputs(node), results or []):
            if tensor is not None and value is not None:
                values[tensor] = value
    return values
