"""The IR verifier: structural invariants, re-inferred types, and DaCe's own SDFG validation."""
from __future__ import annotations

import sympy
from dace.sdfg import nodes as dnodes

from .errors import SdflowError, VerificationError
from .graph import Graph
from .nodes import OpNode
from .semantics import infer_node, known_values, with_static_inputs

__all__ = ["verify"]


def verify(graph: Graph, dace_validation: bool = True) -> None:
    """Raises VerificationError naming the first broken invariant. ``dace_validation=False`` skips DaCe's own
    SDFG validation (seconds on a 12-layer transformer); sdflow's checks, cycles included, always run."""
    sdfg = graph.sdfg
    if len(list(sdfg.states())) != 1:
        raise VerificationError("an IR graph has exactly one state")
    state = graph.state
    for node in state.nodes():
        if not isinstance(node, (dnodes.AccessNode, OpNode)):
            raise VerificationError(f"unexpected node {node} of type {type(node).__name__} (lowered graph?)")
    _check_writers(graph)
    values = known_values(graph)
    ordered = graph.op_nodes()
    if len(ordered) != sum(isinstance(n, OpNode) for n in state.nodes()):
        raise VerificationError("the graph has a cycle")
    for node in ordered:
        _check_node(graph, node, values)
    if not dace_validation:
        return
    try:
        sdfg.validate()
    except Exception as error:  # DaCe raises several unrelated exception types
        raise VerificationError(f"DaCe validation failed: {error}") from error


def _check_writers(graph: Graph) -> None:
    writes: dict[str, int] = {}
    for access in graph.state.data_nodes():
        writes[access.data] = writes.get(access.data, 0) + graph.state.in_degree(access)
    for tensor, count in writes.items():
        if count > 1:
            raise VerificationError(f"tensor {tensor!r} is written {count} times")
        if graph.is_constant(tensor) and count:
            raise VerificationError(f"constant {tensor!r} is written by an op")
    for name, desc in graph.sdfg.arrays.items():
        if desc.transient and not writes.get(name):
            raise VerificationError(f"intermediate tensor {name!r} has no producer")


def _check_node(graph: Graph, node: OpNode, values) -> None:
    connected = {e.dst_conn for e in graph.state.in_edges(node)}
    for connector in node.onnx_inputs:
        if connector and connector not in connected:
            raise VerificationError(f"node {node.label!r} ({node.op_type}): input {connector!r} is not connected")
    inputs = graph.node_inputs(node)
    types = [graph.tensor_type(t) if t else None for t in inputs]
    try:
        expected = infer_node(node, types, with_static_inputs(node, [values.get(t) if t else None for t in inputs]))
    except SdflowError as error:
        raise VerificationError(str(error)) from None
    for tensor, ttype in zip(graph.node_outputs(node), expected):
        if tensor is None:
            continue
        actual = graph.tensor_type(tensor)
        same_shape = actual.rank == ttype.rank and all(
            a == b or sympy.simplify(sympy.sympify(a) - sympy.sympify(b)) == 0
            for a, b in zip(actual.shape, ttype.shape))
        if actual.dtype != ttype.dtype or not same_shape:
            raise VerificationError(f"node {node.label!r} ({node.op_type}): output {tensor!r} is {actual}, "
                                    f"but the op infers {ttype}")
