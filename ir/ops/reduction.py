"""Reductions and normalisations: Reduce*, ArgMax/ArgMin, Softmax/LogSoftmax, LayerNormalization."""
from __future__ import annotations

import numpy as np
import sympy

from ..types import TensorType
from ._base import Op, normalize_axis, op, same_as_input, static_int_list

__all__ = ["reduce_axes", "REDUCE_OPS"]

def _extreme(x, largest: bool):
    """The identity of min/max for ``x``'s type (what a reduction over an empty axis gives)."""
    if x.dtype.kind == "f":
        return -np.inf if largest else np.inf
    if x.dtype.kind in "iu":
        return np.iinfo(x.dtype).min if largest else np.iinfo(x.dtype).max
    return not largest


def _f64(x):
    return x.astype(np.float64) if x.dtype.kind == "f" else x


# op -> f(x, axes, keepdims), evaluated in float64 for float inputs (the oracle's precision).
REDUCE_OPS = {
    "ReduceSum": lambda x, axes, keep: np.sum(x, axis=axes, keepdims=keep),
    "ReduceMean": lambda x, axes, keep: np.mean(_f64(x), axis=axes, keepdims=keep),
    "ReduceMax": lambda x, axes, keep: np.max(x, axis=axes, keepdims=keep, initial=_extreme(x, True)),
    "ReduceMin": lambda x, axes, keep: np.min(x, axis=axes, keepdims=keep, initial=_extreme(x, False)),
    "ReduceProd": lambda x, axes, keep: np.prod(x, axis=axes, keepdims=keep),
    "ReduceL1": lambda x, axes, keep: np.sum(np.abs(x), axis=axes, keepdims=keep),
    "ReduceL2": lambda x, axes, keep: np.sqrt(np.sum(np.square(_f64(x)), axis=axes, keepdims=keep)),
    "ReduceSumSquare": lambda x, axes, keep: np.sum(np.square(x), axis=axes, keepdims=keep),
    "ReduceLogSum": lambda x, axes, keep: np.log(np.sum(_f64(x), axis=axes, keepdims=keep)),
    "ReduceLogSumExp": lambda x, axes, keep: np.log(np.sum(np.exp(_f64(x)), axis=axes, keepdims=keep)),
}


def reduce_axes(node, rank: int, axes_value) -> list[int]:
    """The reduced axes (sorted, non-negative); [] means "no reduction" (noop_with_empty_axes)."""
    if node.op_type == "ReduceSum" or node.opset >= 18:
        axes = None if axes_value is None else static_int_list(axes_value, f"{node.op_type} axes")
    else:
        axes = node.attr("axes")
    if not axes:
        return [] if node.attr("noop_with_empty_axes", 0) else list(range(rank))
    return sorted({normalize_axis(int(a), rank) for a in axes})


class Reduce(Op):
    value_inputs = (1, )

    @classmethod
    def infer(cls, node, inputs, values):
        x = inputs[0]
        axes = reduce_axes(node, x.rank, values[1] if len(values) > 1 else None)
        keep = node.attr("keepdims", 1)
        shape = [1 if i in axes else d for i, d in enumerate(x.shape) if keep or i not in axes]
        return [TensorType(x.dtype, shape)]

    @classmethod
    def reference(cls, node, x, axes=None):
        reduced = reduce_axes(node, x.ndim, axes)
        if not reduced:
            return [x.copy()]
        if x.dtype == object and node.op_type in _SYMBOLIC_REDUCE:  # shape arithmetic: min(count, 300)
            combine = np.frompyfunc(_SYMBOLIC_REDUCE[node.op_type], 2, 1)
            result = x
            for axis in sorted(reduced, reverse=True):
                result = combine.reduce(result, axis=axis, keepdims=bool(node.attr("keepdims", 1)))
            return [np.asarray(result, dtype=object)]
        with np.errstate(divide="ignore", invalid="ignore"):
            result = REDUCE_OPS[node.op_type](x, tuple(reduced), bool(node.attr("keepdims", 1)))
        return [np.asarray(result).astype(x.dtype)]


_SYMBOLIC_REDUCE = {"ReduceMin": lambda a, b: sympy.Min(a, b), "ReduceMax": lambda a, b: sympy.Max(a, b)}

for _name in REDUCE_OPS:
    globals()[_name] = op(_name, since=13)(type(_name, (Reduce, ), {}))


class AlongAxis(Op):
    """Ops that work along ``axis`` (default -1) and keep their input's type."""

    @classmethod
    def infer(cls, node, inputs, values):
        normalize_axis(node.attr("axis", -1), inputs[0].rank)
        return [same_as_input(inputs)]


@op("Softmax", since=13)
class Softmax(AlongAxis):
    @classmethod
    def reference(cls, node, x):
        axis = node.attr("axis", -1)
        shifted = np.exp(x - x.max(axis=axis, keepdims=True))
        return [(shifted / shifted.sum(axis=axis, keepdims=True)).astype(x.dtype)]


@op("LogSoftmax", since=13)
class LogSoftmax(Softmax):
    @classmethod
    def reference(cls, node, x):
        axis = node.attr("axis", -1)
        shifted = _f64(x) - x.max(axis=axis, keepdims=True)
        return [(shifted - np.log(np.exp(shifted).sum(axis=axis, keepdims=True))).astype(x.dtype)]


@op("Hardmax", since=13)
class Hardmax(Softmax):
    @classmethod
    def reference(cls, node, x):
        axis = normalize_axis(node.attr("axis", -1), x.ndim)
        winner = np.expand_dims(np.argmax(x, axis=axis), axis)
        return [(np.arange(x.shape[axis]).reshape([-1 if a == axis else 1 for a in range(x.ndim)]) == winner)
                .astype(x.dtype)]


class ArgReduce(Op):
    """ArgMax/ArgMin: int64 indices along ``axis``; ties give the first index unless select_last_index."""

    @classmethod
    def infer(cls, node, inputs, values):
        x = inputs[0]
        axis = normalize_axis(node.attr("axis", 0), x.rank)
        keep = node.attr("keepdims", 1)
        shape = [1 if i == axis else d for i, d in enumerate(x.shape) if keep or i != axis]
        return [TensorType(np.int64, shape)]

    @classmethod
    def reference(cls, node, x):
        axis = normalize_axis(node.attr("axis", 0), x.ndim)
        pick = np.argmax if node.op_type == "ArgMax" else np.argmin
        if node.attr("select_last_index", 0):
            result = x.shape[axis] - 1 - pick(np.flip(x, axis), axis=axis)
        else:
            result = pick(x, axis=axis)
        if node.attr("keepdims", 1):
            result = np.expand_dims(result, axis)
        return [np.asarray(result, dtype=np.int64)]


ArgMax = op("ArgMax", since=13)(type("ArgMax", (ArgReduce, ), {}))
ArgMin = op("ArgMin", since=13)(type("ArgMin", (ArgReduce, ), {}))


@op("LayerNormalization", since=17)
class LayerNormalization(Op):
    @classmethod
    def infer(cls, node, inputs, values):
        x = inputs[0]
        axis = normalize_axis(node.attr("axis", -1), x.rank)
        stats = TensorType(np.float32, list(x.shape[:axis]) + [1] * (x.rank - axis))
        return [same_as_input(inputs), stats, stats]

    @classmethod
    def reference(cls, node, x, scale, bias=None):
        axis = normalize_axis(node.attr("axis", -1), x.ndim)
        axes = tuple(range(axis, x.ndim))
        x64 = x.astype(np.float64)
        mean = x64.mean(axis=axes, keepdims=True)
        inv_std = 1 / np.sqrt(((x64 - mean) ** 2).mean(axis=axes, keepdims=True) + node.attr("epsilon", 1e-5))
        y = (x64 - mean) * inv_std * scale
        if bias is not None:
            y = y + bias
        return [y.astype(x.dtype), mean.astype(np.float32), inv_std.astype(np.float32)]


@op("RMSNormalization", since=23)
class RMSNormalization(AlongAxis):
    """x / sqrt(mean(x^2 over axis..) + epsilon) * scale."""

    @classmethod
    def reference(cls, node, x, scale):
        axis = normalize_axis(node.attr("axis", -1), x.ndim)
        x64 = x.astype(np.float64)
        mean_square = (x64 * x64).mean(axis=tuple(range(axis, x.ndim)), keepdims=True)
        return [(x64 / np.sqrt(mean_square + node.attr("epsilon", 1e-5)) * scale).astype(x.dtype)]
