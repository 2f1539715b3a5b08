"""Per-node semantics over a whole graph: the op spec of a node, type re-inference, compile-time values."""
from __future__ import annotations

import numpy as np
import sympy

from .errors import ShapeInferenceError, VerificationError
from .graph import Graph
from .nodes import OpNode
from .registry import lookup_op
from .types import TensorType, dtype_name, is_storage_only

__all__ = ["semantics_of", "infer_node", "known_values", "evaluate_node", "with_static_inputs", "interpret",
           "dim_assumptions"]


def semantics_of(node: OpNode):
    spec = lookup_op(node.domain_name, node.op_type, node.opset)
    if spec is None:
        raise VerificationError(f"node {node.label!r}: no op registered for {node.op_type} at opset {node.opset}")
    return spec.semantics


def infer_node(node: OpNode, inputs: list[TensorType | None], values: list) -> list[TensorType]:
    """Output types of ``node``; errors name the node and op."""
    semantics = semantics_of(node)
    for position in semantics.value_inputs:
        # A shape-like input that is given but unknown must fail here: ops read an absent optional one (Squeeze's
        # axes, Split's sizes) as "the default", which for a given one would be a wrong result.
        if position < len(inputs) and inputs[position] is not None and (
                position >= len(values) or values[position] is None):
            raise ShapeInferenceError(
                f"node {node.label!r} ({node.op_type}, opset {node.opset}): input {position} must be known at "
                "compile time (a constant or derived from shapes); to compile once per value of a graph input, "
                "use sdflow.compile(..., value_inputs='specialize')")
    try:
        outputs = semantics.infer(node, inputs, values)
    except ShapeInferenceError as error:
        raise ShapeInferenceError(f"node {node.label!r} ({node.op_type}, opset {node.opset}): {error}") from None
    except (TypeError, ValueError, KeyError, IndexError, ArithmeticError, AttributeError) as error:
        # An input combination the op's inference did not foresee: still an SdflowError that names the node.
        raise ShapeInferenceError(f"node {node.label!r} ({node.op_type}, opset {node.opset}): cannot infer the "
                                  f"output types ({type(error).__name__}: {error})") from None
    narrow = sorted({dtype_name(t.dtype) for t in [*inputs, *outputs] if t is not None and is_storage_only(t.dtype)})
    # (a fused op's steps were each checked when its program inferred their types: a 4-bit weight's
    # DequantizeLinear is the first step of a fused product)
    if narrow and node.op_type not in STORAGE_ONLY_OPS and not (node.op_type == "Fused" and node.domain_name):
        raise ShapeInferenceError(
            f"node {node.label!r} ({node.op_type}, opset {node.opset}): {', '.join(narrow)} tensors are stored, not "
            f"computed on: only {', '.join(sorted(STORAGE_ONLY_OPS))} take them (cast to a wider type first)")
    return outputs


# The ops that take storage-only element types (float8, float4, int4, int2; ir.types.STORAGE_ONLY): conversions,
# which call codegen/kernels/lowp.h, and ops that only move or select whole elements (their bytes).
STORAGE_ONLY_OPS = frozenset({
    "Cast", "CastLike", "BitCast", "QuantizeLinear", "DequantizeLinear", "Identity", "Reshape", "Flatten", "Squeeze",
    "Unsqueeze", "Transpose", "Concat", "Split", "Slice", "Gather", "GatherElements", "GatherND", "Expand", "Tile",
    "Shape", "Size"})


def with_static_inputs(node: OpNode, values: list, symbols: dict | None = None) -> list:
    """``values`` by ONNX input position, with the node's compile-time (folded) inputs filled in; symbolic
    entries are evaluated when ``symbols`` binds them."""
    values = list(values) + [None] * (len(node.onnx_inputs) - len(values))
    for position in range(len(values)):
        static = node.static_input(position)
        if static is not None and static.dtype == object and symbols is not None:
            static = np.array([int(sympy.sympify(v).subs(symbols)) for v in static], dtype=np.int64)
        if static is not None:
            values[position] = static
    return values


def evaluate_node(node: OpNode, arrays: list, symbols: dict | None = None) -> list[np.ndarray]:
    """Runs the numpy reference of ``node`` (the test oracle); ``symbols`` binds symbolic dims."""
    return semantics_of(node).reference(node, *with_static_inputs(node, arrays, symbols))


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


def interpret(graph: Graph, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Runs the graph node by node with the numpy references (the oracle for passes, no native build).
    ``inputs`` and the result are keyed by ONNX names."""
    values = dict(graph.constants)
    symbols = {}
    for name in graph.inputs:
        values[name] = np.asarray(inputs[graph.onnx_name(name)])
        for dim, size in zip(graph.tensor_type(name).shape, values[name].shape):
            if isinstance(dim, sympy.Symbol):
                symbols[dim] = size
    for node in graph.op_nodes():
        arrays = [values[t] if t else None for t in graph.node_inputs(node)]
        for tensor, value in zip(graph.node_outputs(node), evaluate_node(node, arrays, symbols)):
            if tensor is not None:
                values[tensor] = np.asarray(value)
    return {graph.onnx_name(name): values[name] for name in graph.outputs}


def dim_assumptions(graph: Graph) -> list[tuple[sympy.Expr, str, sympy.Expr, str]]:
    """Relations between a symbolic dim and another dim that type inference assumed, as (dim, relation, other,
    where) with relation "==" (MatMul's inner dims, an element-wise input's dim and the output's), "== or 1" (the
    same for a size known only at run time, which may broadcast) or ">=" (a Slice bound inside a symbolic dim: ONNX
    would clamp it, the inferred size does not).
    They hold for inputs the model can take; the runtime checks them before running native code."""
    from .ops.elementwise import ELEMENTWISE_OPS
    from .ops.movement import is_data_dependent
    found = []

    def expect(a, relation, b, where):
        if a != b and not (isinstance(a, int) and isinstance(b, int)):
            found.append((sympy.sympify(a), relation, sympy.sympify(b), where))

    def elementwise(shapes, out, where, run_time_broadcast=True):
        for shape in shapes:
            for dim, out_dim in zip(reversed(shape), reversed(out)):
                if dim == 1:
                    continue
                # A symbolic dim indexes as itself: it broadcasts only where it is 1 statically, but a size known
                # only at run time may be 1 there (its kernels index it min(i, dim - 1)).
                relation = "== or 1" if run_time_broadcast and is_data_dependent(dim) else "=="
                expect(dim, relation, out_dim, where)

    values = known_values(graph)
    for node in graph.op_nodes():
        shapes = [graph.tensor_type(t).shape for t in graph.node_inputs(node) if t]
        where = f"{node.op_type} node {node.label!r}"
        if node.op_type in ELEMENTWISE_OPS:
            elementwise(shapes, graph.tensor_type(graph.node_outputs(node)[0]).shape, where)
        elif node.op_type == "Fused":
            # The element-wise steps of a fused kernel keep their rule (fusion must not drop the check).
            program = node.parsed
            known = program.types([graph.tensor_type(t) if t else None for t in graph.node_inputs(node)])
            for step in program.steps:
                if step.op_type in ELEMENTWISE_OPS and step.results and step.results[0] in known:
                    elementwise([known[a].shape for a in step.args if a in known], known[step.results[0]].shape,
                                f"{step.op_type} in fused node {node.label!r}", program.kind == "elementwise")
        elif node.op_type == "MatMul" and all(len(s) >= 2 for s in shapes):
            expect(shapes[0][-1], "==", shapes[1][-2], where)
        elif node.op_type == "Slice":
            found += _slice_bounds(graph, node, values, where)
    return found


def _slice_bounds(graph: Graph, node: OpNode, values: dict, where: str) -> list:
    """A Slice's int starts/ends on symbolic dims are taken as they are: each must lie inside the dim."""
    from .ops.movement import BIG_INDEX, is_data_dependent
    inputs = graph.node_inputs(node)
    given = with_static_inputs(node, [values.get(t) if t else None for t in inputs])
    shape = graph.tensor_type(inputs[0]).shape
    if any(v is None for v in given[1:3]):
        return []
    axes = given[3] if len(given) > 3 and given[3] is not None else range(len(np.ravel(given[1])))
    found = []
    for axis, start, end in zip(np.ravel(axes), np.ravel(given[1]), np.ravel(given[2])):
        dim = sympy.sympify(shape[int(axis) % len(shape)])
        for bound in (start, end):
            if isinstance(bound, sympy.Basic) and not bound.is_number:
                # A bound from another input's dims (BERT's position ids sliced to the sequence length).
                found.append((dim, ">=", bound, where))
            elif (not dim.is_number and isinstance(bound, (int, np.integer)) and not is_data_dependent(dim)
                  and -BIG_INDEX < int(bound) < BIG_INDEX and int(bound) != 0):
                found.append((dim, ">=", sympy.Integer(abs(int(bound))), where))
    return found
