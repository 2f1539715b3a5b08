"""Ops whose output elements copy input elements (or constants) found by index arithmetic: Tile, Pad, Trilu,
DepthToSpace, SpaceToDepth, EyeLike, OneHot, Dropout (inference), CenterCropPad, Compress, and the scattering and
selecting ScatterElements, ScatterND, TopK."""
from __future__ import annotations

import numpy as np

from ..errors import ShapeInferenceError
from ..types import TensorType, numpy_dtype
from ._base import Op, normalize_axis, op, same_as_input, static_int_list

__all__ = ["pad_amounts", "center_crop_pad_offsets", "compress_indices"]


@op("Tile", since=13)
class Tile(Op):
    value_inputs = (1, )

    @classmethod
    def infer(cls, node, inputs, values):
        repeats = static_int_list(values[1], "Tile repeats")
        if len(repeats) != inputs[0].rank:
            raise ShapeInferenceError(f"Tile: {len(repeats)} repeats for rank {inputs[0].rank}")
        return [TensorType(inputs[0].dtype, [d * r for d, r in zip(inputs[0].shape, repeats)])]

    @classmethod
    def reference(cls, node, x, repeats):
        return [np.tile(x, [int(r) for r in repeats])]


def pad_amounts(node, rank: int, pads_value, axes_value) -> tuple[list, list]:
    """(begin, end) padding per axis; negative amounts crop."""
    pads = static_int_list(pads_value, "Pad pads")
    axes = list(range(rank)) if axes_value is None else [normalize_axis(int(a), rank)
                                                        for a in static_int_list(axes_value, "Pad axes")]
    if len(pads) != 2 * len(axes):
        raise ShapeInferenceError(f"Pad: {len(pads)} pads for {len(axes)} axes")
    begin, end = [0] * rank, [0] * rank
    for k, axis in enumerate(axes):
        begin[axis], end[axis] = pads[k], pads[k + len(axes)]
    return begin, end


@op("Pad", since=13)
class Pad(Op):
    value_inputs = (1, 3)

    @classmethod
    def infer(cls, node, inputs, values):
        x = inputs[0]
        begin, end = pad_amounts(node, x.rank, values[1], values[3] if len(values) > 3 else None)
        if node.attr("mode", "constant") not in ("constant", "reflect", "edge", "wrap"):
            raise ShapeInferenceError(f"Pad: unknown mode {node.attr('mode')!r}")
        return [TensorType(x.dtype, [d + b + e for d, b, e in zip(x.shape, begin, end)])]

    @classmethod
    def reference(cls, node, x, pads, constant_value=None, axes=None):
        begin, end = pad_amounts(node, x.ndim, pads, axes)
        cropped = x[tuple(slice(max(0, -b), d - max(0, -e)) for d, b, e in zip(x.shape, begin, end))]
        widths = [(max(0, b), max(0, e)) for b, e in zip(begin, end)]
        mode = node.attr("mode", "constant")
        if mode == "constant":
            value = 0 if constant_value is None or constant_value.size == 0 else constant_value.ravel()[0]
            return [np.pad(cropped, widths, mode="constant", constant_values=value)]
        return [np.pad(cropped, widths, mode={"reflect": "reflect", "edge": "edge", "wrap": "wrap"}[mode])]


@op("Trilu", since=14)
class Trilu(Op):
    value_inputs = (1, )

    @classmethod
    def infer(cls, node, inputs, values):
        if inputs[0].rank < 2:
            raise ShapeInferenceError("Trilu: the input needs rank >= 2")
        return [same_as_input(inputs)]

    @classmethod
    def reference(cls, node, x, k=None):
        offset = 0 if k is None else int(np.asarray(k).ravel()[0])
        return [np.triu(x, offset) if node.attr("upper", 1) else np.tril(x, offset)]


@op("DepthToSpace", since=13)
class DepthToSpace(Op):
    @classmethod
    def infer(cls, node, inputs, values):
        n, c, h, w = inputs[0].shape
        b = node.attr("blocksize")
        if isinstance(c, int) and c % (b * b):
            raise ShapeInferenceError(f"DepthToSpace: {c} channels are not divisible by blocksize^2 = {b * b}")
        return [TensorType(inputs[0].dtype, [n, c // (b * b), h * b, w * b])]

    @classmethod
    def reference(cls, node, x):
        n, c, h, w = x.shape
        b = node.attr("blocksize")
        if node.attr("mode", "DCR") == "DCR":
            view = x.reshape(n, b, b, c // (b * b), h, w).transpose(0, 3, 4, 1, 5, 2)
        else:
            view = x.reshape(n, c // (b * b), b, b, h, w).transpose(0, 1, 4, 2, 5, 3)
        return [view.reshape(n, c // (b * b), h * b, w * b).copy()]


@op("SpaceToDepth", since=13)
class SpaceToDepth(Op):
    @classmethod
    def infer(cls, node, inputs, values):
        n, c, h, w = inputs[0].shape
        b = node.attr("blocksize")
        return [TensorType(inputs[0].dtype, [n, c * b * b, h // b, w // b])]

    @classmethod
    def reference(cls, node, x):
        n, c, h, w = x.shape
        b = node.attr("blocksize")
        perm = (0, 3, 5, 1, 2, 4) if node.attr("mode", "DCR") == "DCR" else (0, 1, 3, 5, 2, 4)
        view = x.reshape(n, c, h // b, b, w // b, b).transpose(perm)
        return [view.reshape(n, c * b * b, h // b, w // b).copy()]


@op("EyeLike", since=9)
class EyeLike(Op):
    @classmethod
    def dtype(cls, node, x_dtype):
        return x_dtype if node.attr("dtype") is None else numpy_dtype(node.attr("dtype"))

    @classmethod
    def infer(cls, node, inputs, values):
        if inputs[0].rank != 2:
            raise ShapeInferenceError("EyeLike: the input must be 2-D")
        return [TensorType(cls.dtype(node, inputs[0].dtype), inputs[0].shape)]

    @classmethod
    def reference(cls, node, x):
        return [np.eye(x.shape[0], x.shape[1], k=node.attr("k", 0), dtype=cls.dtype(node, x.dtype))]


@op("OneHot", since=11)
class OneHot(Op):
    value_inputs = (1, )

    @classmethod
    def depth(cls, value) -> int:
        return int(np.asarray(value).ravel()[0])  # may be given as a float

    @classmethod
    def infer(cls, node, inputs, values):
        indices = inputs[0]
        axis = normalize_axis(node.attr("axis", -1), indices.rank + 1)
        shape = list(indices.shape)
        shape.insert(axis, cls.depth(values[1]))
        return [TensorType(inputs[2].dtype, shape)]

    @classmethod
    def reference(cls, node, indices, depth, values):
        depth = cls.depth(depth)
        axis = normalize_axis(node.attr("axis", -1), indices.ndim + 1)
        idx = np.asarray(indices).astype(np.int64)
        idx = np.where(idx < 0, idx + depth, idx)
        hot = np.expand_dims(idx, axis) == np.arange(depth).reshape([-1 if a == axis else 1
                                                                     for a in range(indices.ndim + 1)])
        return [np.where(hot, values[1], values[0]).astype(values.dtype)]


@op("Dropout", since=13)
class Dropout(Op):
    """Inference: the output is the input and the mask all true; training_mode=True is refused."""

    value_inputs = (2, )

    @classmethod
    def infer(cls, node, inputs, values):
        if len(values) > 2 and values[2] is not None and bool(np.asarray(values[2]).ravel()[0]):
            raise ShapeInferenceError("Dropout in training mode draws random masks; sdflow compiles inference")
        return [same_as_input(inputs), TensorType(np.bool_, inputs[0].shape)]

    @classmethod
    def reference(cls, node, x, ratio=None, training_mode=None):
        return [x.copy(), np.ones(x.shape, dtype=bool)]


def _scatter_combine(node, current, update):
    reduction = node.attr("reduction", "none")
    return {"none": update, "add": current + update, "mul": current * update,
            "max": np.maximum(current, update), "min": np.minimum(current, update)}[reduction]


@op("ScatterElements", since=13)
class ScatterElements(Op):
    @classmethod
    def infer(cls, node, inputs, values):
        normalize_axis(node.attr("axis", 0), inputs[0].rank)
        return [same_as_input(inputs)]

    @classmethod
    def reference(cls, node, data, indices, updates):
        axis = normalize_axis(node.attr("axis", 0), data.ndim)
        out = data.copy()
        for position in np.ndindex(*indices.shape):
            target = list(position)
            index = int(indices[position])
            target[axis] = index + data.shape[axis] if index < 0 else index
            out[tuple(target)] = _scatter_combine(node, out[tuple(target)], updates[position])
        return [out]


@op("ScatterND", since=13)
class ScatterND(Op):
    @classmethod
    def infer(cls, node, inputs, values):
        return [same_as_input(inputs)]

    @classmethod
    def reference(cls, node, data, indices, updates):
        out = data.copy()
        for position in np.ndindex(*indices.shape[:-1]):
            target = tuple(int(i) + (d if i < 0 else 0) for i, d in zip(indices[position], data.shape))
            out[target] = _scatter_combine(node, out[target], updates[position])
        return [out]


@op("TopK", since=11)
class TopK(Op):
    """The k largest (or smallest) along ``axis``; equal values keep the lower index first."""

    value_inputs = (1, )

    @classmethod
    def infer(cls, node, inputs, values):
        x = inputs[0]
        axis = normalize_axis(node.attr("axis", -1), x.rank)
        k = static_int_list(values[1], "TopK k")[0]  # symbolic too: min(count, 100) after a data-dependent op
        if isinstance(k, int) and isinstance(x.shape[axis], int) and not 0 <= k <= x.shape[axis]:
            raise ShapeInferenceError(f"TopK: k = {k} is outside 0..{x.shape[axis]} (the size of axis {axis})")
        shape = [k if i == axis else d for i, d in enumerate(x.shape)]
        return [TensorType(x.dtype, shape), TensorType(np.int64, shape)]

    @classmethod
    def reference(cls, node, x, k):
        axis = normalize_axis(node.attr("axis", -1), x.ndim)
        k = int(np.asarray(k).ravel()[0])
        keys = -x if node.attr("largest", 1) else x
        order = np.argsort(keys, axis=axis, kind="stable")
        indices = np.take(order, np.arange(k), axis=axis)
        return [np.take_along_axis(x, indices, axis=axis), indices.astype(np.int64)]


def center_crop_pad_offsets(node, in_shape, sizes) -> tuple[list, list]:
    """(output shape, per-axis offset: output index + offset = input index) of a CenterCropPad."""
    rank = len(in_shape)
    axes = node.attr("axes")
    axes = list(range(rank)) if not axes else [normalize_axis(a, rank) for a in axes]
    out_shape, offsets = list(in_shape), [0] * rank
    for axis, size in zip(axes, sizes):
        dim = in_shape[axis]
        out_shape[axis] = size
        offsets[axis] = (dim - size) // 2 if size <= dim else -((size - dim) // 2)
    return out_shape, offsets


@op("CenterCropPad", since=18)
class CenterCropPad(Op):
    value_inputs = (1, )

    @classmethod
    def infer(cls, node, inputs, values):
        out_shape, _ = center_crop_pad_offsets(node, inputs[0].shape, static_int_list(values[1], "CenterCropPad shape"))
        return [TensorType(inputs[0].dtype, out_shape)]

    @classmethod
    def reference(cls, node, x, shape):
        out_shape, offsets = center_crop_pad_offsets(node, x.shape, [int(s) for s in shape])
        out = np.zeros(out_shape, x.dtype)
        source, target = [], []
        for offset, dim, size in zip(offsets, x.shape, out_shape):
            first_in, first_out = max(0, offset), max(0, -offset)
            length = min(dim - first_in, size - first_out)
            source.append(slice(first_in, first_in + length))
            target.append(slice(first_out, first_out + length))
        out[tuple(target)] = x[tuple(source)]
        return [out]


def compress_indices(condition) -> list[int]:
    return [int(i) for i in np.flatnonzero(np.asarray(condition).astype(bool))]


@op("Compress", since=11)
class Compress(Op):
    """The slices along ``axis`` (the flattened input without one) where the condition holds. The condition
    must be known at compile time (value_inputs='specialize' compiles one build per condition)."""

    value_inputs = (1, )

    @classmethod
    def infer(cls, node, inputs, values):
        count = len(compress_indices(values[1]))
        x = inputs[0]
        if node.attr("axis") is None:
            return [TensorType(x.dtype, [count])]
        axis = normalize_axis(node.attr("axis"), x.rank)
        return [TensorType(x.dtype, [count if a == axis else d for a, d in enumerate(x.shape)])]

    @classmethod
    def reference(cls, node, x, condition):
        axis = node.attr("axis")
        return [np.compress(np.asarray(condition).astype(bool), x, axis=axis)]
