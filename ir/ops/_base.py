"""The base of op semantics (output-type inference + numpy reference) and the ``@op`` registration decorator."""
from __future__ import annotations

import functools

import numpy as np
import onnx
import sympy

from ..errors import ShapeInferenceError
from ..nodes import node_class_for
from ..registry import OpSpec, register_op
from ..types import Dim, TensorType, to_dim

__all__ = ["Op", "op", "broadcast_shapes", "normalize_axis", "static_int_list", "same_as_input", "onnx_reference"]


# Value tracking is for shape arithmetic; larger tensors are left to the fold-constants pass.
_MAX_FOLDED_ELEMENTS = 64


class Op:
    """Semantics of one ONNX op.

    ``value_inputs`` lists the input positions whose *values* (not only types) the output type depends on
    (Reshape's shape, Slice's starts, ...); the frontend supplies them where known, else inference fails.
    """

    value_inputs: tuple[int, ...] = ()
    # Inputs whose compile-time value, when known, lets codegen specialise (Pow's exponent); types never need it.
    optional_value_inputs: tuple[int, ...] = ()

    @classmethod
    def infer(cls, node, inputs: list[TensorType | None], values: list) -> list[TensorType]:
        raise NotImplementedError

    @classmethod
    def reference(cls, node, *inputs):
        """numpy reference: arrays in (None for absent optional inputs), list of arrays out."""
        raise NotImplementedError

    @classmethod
    def known_values(cls, node, inputs: list[TensorType | None], values: list) -> list | None:
        """Output values computable at compile time (shape arithmetic on small tensors, possibly symbolic)."""
        if any(v is None for v, t in zip(values, inputs) if t is not None):
            return None
        if any(np.size(v) > _MAX_FOLDED_ELEMENTS for v in values if v is not None):
            return None
        try:
            return [np.asarray(v) for v in cls.reference(node, *values)]
        except (TypeError, ValueError, AttributeError, ArithmeticError):
            return None  # e.g. a float function applied to a symbolic value


@functools.cache
def _schema_history() -> dict[tuple[str, str], list[onnx.defs.OpSchema]]:
    history = {}
    for schema in onnx.defs.get_all_schemas_with_history():
        history.setdefault((schema.domain, schema.name), []).append(schema)
    return history


def op(op_type: str, since: int = 1, until: int | None = None, domain: str = ""):
    """Registers an Op subclass for ``op_type`` on opsets [since, until] and generates its node class."""

    def decorate(cls):
        # Newest schema first: its attribute defaults become the property defaults.
        schemas = sorted((s for s in _schema_history().get((domain, op_type), [])
                          if until is None or s.since_version <= until), key=lambda s: -s.since_version)
        node_class = node_class_for(domain, op_type, schemas)
        register_op(OpSpec(domain, op_type, since, until, cls, node_class))
        cls.op_type = op_type
        return cls

    return decorate


def normalize_axis(axis: int, rank: int) -> int:
    if not -rank <= axis < max(rank, 1):
        raise ShapeInferenceError(f"axis {axis} is out of range for rank {rank}")
    return axis + rank if axis < 0 else axis


def _broadcast_dim(a: Dim, b: Dim) -> Dim:
    from .movement import is_data_dependent
    if a == b or b == 1:
        return a
    if a == 1:
        return b
    if isinstance(a, int) and isinstance(b, int):
        raise ShapeInferenceError(f"dimensions {a} and {b} do not broadcast")
    if is_data_dependent(a) or is_data_dependent(b):
        # A size known only at run time may be 1 there (ONNX broadcasts it): the larger of the two.
        return a if isinstance(a, int) else b if isinstance(b, int) else to_dim(sympy.Max(a, b))
    # Two different symbolic sizes: the graph promises they agree at run time; keep the first.
    return a


def broadcast_shapes(*shapes) -> tuple[Dim, ...]:
    rank = max((len(s) for s in shapes), default=0)
    result: list[Dim] = [1] * rank
    for shape in shapes:
        padded = [1] * (rank - len(shape)) + list(shape)
        result = [_broadcast_dim(a, b) for a, b in zip(result, padded)]
    return tuple(result)


def static_int_list(value, what: str) -> list:
    """The values of a shape-like input as a list of ints/sympy expressions; fails if unknown at compile time."""
    if value is None:
        raise ShapeInferenceError(f"{what} must be known at compile time (a constant or derived from shapes)")
    return [to_dim(v) for v in np.asarray(value).ravel().tolist()]


def same_as_input(inputs, index=0, dtype=None) -> TensorType:
    source = inputs[index]
    return TensorType(dtype if dtype is not None else source.dtype, source.shape)


def is_symbolic(value) -> bool:
    return isinstance(value, np.ndarray) and value.dtype == object and any(
        isinstance(v, sympy.Basic) and not v.is_Integer for v in value.ravel())


def onnx_reference(node, *inputs) -> list[np.ndarray]:
    """Runs ``node`` through ONNX's own reference implementation (onnx.reference) on numpy inputs (None for
    absent optional inputs): for ops whose semantics are easiest to state as ONNX's code."""
    import json

    from onnx import helper
    from onnx.reference import ReferenceEvaluator

    names = [f"in{i}" if value is not None else "" for i, value in enumerate(inputs)]
    while names and not names[-1]:
        names.pop()
    attributes = {}
    try:  # the node class carries the newest schema's attributes; the reference takes its opset's only
        known = set(onnx.defs.get_schema(node.op_type, node.opset, node.domain_name).attributes)
    except onnx.defs.SchemaError:
        known = None
    for name, value in node.attributes.items():
        if known is not None and name not in known:
            continue
        if isinstance(value, str) and value.startswith('{"dtype"'):
            entry = json.loads(value)
            value = onnx.numpy_helper.from_array(np.array(entry["data"], entry["dtype"]).reshape(entry["shape"]))
        attributes[name] = value
    outputs = [f"out{i}" for i in range(len(node.onnx_outputs))]
    proto = helper.make_node(node.op_type, names, outputs, domain=node.domain_name, **attributes)
    values = [np.asarray(v) for v in inputs if v is not None]
    graph = helper.make_graph([proto], "reference", [
        helper.make_tensor_value_info(n, onnx.helper.np_dtype_to_tensor_dtype(v.dtype), v.shape)
        for n, v in zip([n for n in names if n], values)], [helper.make_tensor_value_info(o, 0, None) for o in outputs])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid(node.domain_name, node.opset)])
    return list(ReferenceEvaluator(model).run(None, dict(zip([n for n in names if n], values))))
