"""Reductions and normalisations: ReduceMean/Sum/Max, Softmax, LayerNormalization."""
from __future__ import annotations

import numpy as np

from ..types import TensorType
from ._base import Op, normalize_axis, op, same_as_input, static_int_list

__all__ = ["reduce_axes", "REDUCE_OPS"]

REDUCE_OPS = {"ReduceMean": np.mean, "ReduceSum": np.sum, "ReduceMax": np.max}


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
        func = REDUCE_OPS[node.op_type]
        keepdims = bool(node.attr("keepdims", 1))
        if node.op_type == "ReduceMax":  # with its identity, so that an empty axis reduces to it
            lowest = -np.inf if x.dtype.kind == "f" else (np.iinfo(x.dtype).min if x.dtype.kind in "iu" else False)
            return [np.max(x, axis=tuple(reduced), keepdims=keepdims, initial=lowest).astype(x.dtype)]
        return [np.asarray(func(x, axis=tuple(reduced), keepdims=keepdims)).astype(x.dtype)]


for _name in REDUCE_OPS:
    globals()[_name] = op(_name, since=13)(type(_name, (Reduce, ), {}))


@op("Softmax", since=13)
class Softmax(Op):
    @classmethod
    def infer(cls, node, inputs, values):
        normalize_axis(node.attr("axis", -1), inputs[0].rank)
        return [same_as_input(inputs)]

    @classmethod
    def reference(cls, node, x):
        axis = node.attr("axis", -1)
        shifted = np.exp(x - x.max(axis=axis, keepdims=True))
        return [(shifted / shifted.sum(axis=axis, keepdims=True)).astype(x.dtype)]


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
