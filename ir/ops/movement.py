"""Data-movement and shape ops: Reshape, Flatten, Squeeze, Unsqueeze, Transpose, Concat, Split, Slice, Gather,
Expand, Shape, ConstantOfShape."""
from __future__ import annotations

import numpy as np
import sympy
from dace.symbolic import int_floor

from ..errors import ShapeInferenceError
from ..nodes import decode_tensor_attribute
from ..types import TensorType, to_dim
from ._base import Op, broadcast_shapes, normalize_axis, op, static_int_list

__all__ = ["reshape_target", "slice_params", "split_sizes", "squeeze_axes", "unsqueeze_axes", "RESHAPE_OPS"]

# Ops that keep the data and only change the shape (lowered to one copy, later to views).
RESHAPE_OPS = {"Reshape", "Flatten", "Squeeze", "Unsqueeze"}


def _product(dims):
    result = sympy.Integer(1)
    for d in dims:
        result = result * d
    return result


def _simplified(expr):
    """A product or quotient of dims in lowest terms (integers stay integers; sympy's simplify is slow)."""
    expr = sympy.sympify(expr)
    return expr if expr.is_Integer else sympy.cancel(expr)


def reshape_target(in_shape, shape, allowzero=0) -> list:
    dims = [in_shape[i] if (d == 0 and not allowzero) else d for i, d in enumerate(shape)]
    if sum(1 for d in dims if d == -1) > 1:
        raise ShapeInferenceError("Reshape: more than one -1 in the target shape")
    if -1 in dims:
        known = _product(d for d in dims if d != -1)
        rest = _simplified(_product(in_shape) / known)
        if rest.is_Rational and not rest.is_Integer:
            raise ShapeInferenceError(f"Reshape: cannot reshape {list(in_shape)} into {shape}")
        dims = [rest if d == -1 else d for d in dims]
    dims = [to_dim(d) for d in dims]
    total_in, total_out = _simplified(_product(in_shape)), _simplified(_product(dims))
    if total_in.is_Integer and total_out.is_Integer and total_in != total_out:
        raise ShapeInferenceError(f"Reshape: cannot reshape {list(in_shape)} into {shape}")
    return dims


@op("Reshape", since=13)
class Reshape(Op):
    value_inputs = (1, )

    @classmethod
    def infer(cls, node, inputs, values):
        target = static_int_list(values[1], "Reshape's shape input")
        return [TensorType(inputs[0].dtype, reshape_target(inputs[0].shape, target, node.attr("allowzero", 0)))]

    @classmethod
    def reference(cls, node, data, shape):
        target = reshape_target(data.shape, [int(s) for s in shape], node.attr("allowzero", 0))
        return [data.reshape([int(d) for d in target]).copy()]


@op("Flatten", since=13)
class Flatten(Op):
    @classmethod
    def axis(cls, node, rank: int) -> int:
        """Flatten's axis lies in [-rank, rank] (rank itself means "all dims in the first output dim")."""
        axis = node.attr("axis", 1)
        if not -rank <= axis <= rank:
            raise ShapeInferenceError(f"Flatten: axis {axis} is out of range for rank {rank}")
        return axis + rank if axis < 0 else axis

    @classmethod
    def infer(cls, node, inputs, values):
        x = inputs[0]
        axis = cls.axis(node, x.rank)
        return [TensorType(x.dtype, [_product(x.shape[:axis]), _product(x.shape[axis:])])]

    @classmethod
    def reference(cls, node, x):
        axis = cls.axis(node, x.ndim)
        return [x.reshape(int(np.prod(x.shape[:axis])), -1).copy()]


def squeeze_axes(shape, axes_value) -> list[int]:
    if axes_value is None:
        return [i for i, d in enumerate(shape) if d == 1]
    axes = sorted(normalize_axis(int(a), len(shape)) for a in static_int_list(axes_value, "Squeeze axes"))
    for a in axes:
        if shape[a] != 1 and isinstance(shape[a], int):
            raise ShapeInferenceError(f"Squeeze: dimension {a} has size {shape[a]}, not 1")
    return axes


def unsqueeze_axes(rank, axes_value) -> list[int]:
    axes = static_int_list(axes_value, "Unsqueeze axes")
    out_rank = rank + len(axes)
    return sorted(normalize_axis(int(a), out_rank) for a in axes)


@op("Squeeze", since=13)
class Squeeze(Op):
    value_inputs = (1, )

    @classmethod
    def infer(cls, node, inputs, values):
        x = inputs[0]
        axes = squeeze_axes(x.shape, values[1] if len(values) > 1 else None)
        return [TensorType(x.dtype, [d for i, d in enumerate(x.shape) if i not in axes])]

    @classmethod
    def reference(cls, node, x, axes=None):
        return [np.squeeze(x, axis=tuple(squeeze_axes(x.shape, axes))).copy()]


@op("Unsqueeze", since=13)
class Unsqueeze(Op):
    value_inputs = (1, )

    @classmethod
    def infer(cls, node, inputs, values):
        x = inputs[0]
        axes = unsqueeze_axes(x.rank, values[1])
        dims = iter(x.shape)
        return [TensorType(x.dtype, [1 if i in axes else next(dims) for i in range(x.rank + len(axes))])]

    @classmethod
    def reference(cls, node, x, axes):
        return [np.expand_dims(x, tuple(unsqueeze_axes(x.ndim, axes))).copy()]


@op("Transpose", since=13)
class Transpose(Op):
    @classmethod
    def perm(cls, node, rank):
        perm = node.attr("perm") or list(range(rank))[::-1]
        if sorted(perm) != list(range(rank)):
            raise ShapeInferenceError(f"Transpose: perm {perm} is not a permutation of {rank} axes")
        return list(perm)

    @classmethod
    def infer(cls, node, inputs, values):
        x = inputs[0]
        return [TensorType(x.dtype, [x.shape[p] for p in cls.perm(node, x.rank)])]

    @classmethod
    def reference(cls, node, x):
        return [np.transpose(x, cls.perm(node, x.ndim)).copy()]


@op("Concat", since=13)
class Concat(Op):
    @classmethod
    def infer(cls, node, inputs, values):
        present = [t for t in inputs if t is not None]
        axis = normalize_axis(node.attr("axis"), present[0].rank)
        for t in present:
            if t.rank != present[0].rank or t.dtype != present[0].dtype:
                raise ShapeInferenceError("Concat: inputs differ in rank or element type")
        shape = list(present[0].shape)
        shape[axis] = to_dim(sum((t.shape[axis] for t in present), sympy.Integer(0)))
        return [TensorType(present[0].dtype, shape)]

    @classmethod
    def reference(cls, node, *xs):
        xs = [x for x in xs if x is not None]
        return [np.concatenate(xs, axis=normalize_axis(node.attr("axis"), xs[0].ndim))]


def split_sizes(node, dim, split_value, outputs: int) -> list:
    if split_value is not None:
        sizes = static_int_list(split_value, "Split's split input")
        if len(sizes) != outputs:
            raise ShapeInferenceError(f"Split: {len(sizes)} sizes for {outputs} outputs")
        return sizes
    if isinstance(dim, int) and dim % outputs:
        chunk = -(-dim // outputs)
        return [chunk] * (outputs - 1) + [dim - chunk * (outputs - 1)]
    return [dim // outputs if isinstance(dim, int) else to_dim(dim / outputs)] * outputs


@op("Split", since=13)
class Split(Op):
    value_inputs = (1, )

    @classmethod
    def infer(cls, node, inputs, values):
        x = inputs[0]
        axis = normalize_axis(node.attr("axis", 0), x.rank)
        sizes = split_sizes(node, x.shape[axis], values[1] if len(values) > 1 else None, len(node.onnx_outputs))
        return [TensorType(x.dtype, x.shape[:axis] + (s, ) + x.shape[axis + 1:]) for s in sizes]

    @classmethod
    def reference(cls, node, x, split=None):
        axis = normalize_axis(node.attr("axis", 0), x.ndim)
        sizes = split_sizes(node, x.shape[axis], split, len(node.onnx_outputs))
        return [a.copy() for a in np.split(x, np.cumsum([int(s) for s in sizes])[:-1], axis=axis)]


BIG_INDEX = 2**30  # a Slice bound at least this large means "to the end"


DATA_DEPENDENT_PREFIX = "dyn_"  # dims named so are sizes a data-dependent op produced (sdflow.fallback names them)


def is_data_dependent(dim) -> bool:
    return isinstance(dim, sympy.Basic) and any(str(s).startswith(DATA_DEPENDENT_PREFIX) for s in dim.free_symbols)


def _clamp(value, dim, low, high_offset):
    """ONNX Slice clamping of one start/end against a (possibly symbolic) dimension."""
    if isinstance(value, int) and value >= BIG_INDEX:
        return dim if high_offset == 0 else dim - 1
    if isinstance(value, int) and value <= -BIG_INDEX:
        return low
    if isinstance(value, int) and value < 0:
        value = dim + value
    if isinstance(dim, int) and isinstance(value, int):
        return min(max(value, low), dim + high_offset)
    if isinstance(value, int) and is_data_dependent(dim):
        # A size only known at run time (NonZero's count): ONNX's clamping in full; elsewhere a bound is assumed to
        # lie inside a symbolic dim (checked at call time, ir.semantics.dim_assumptions), keeping shapes simple.
        return to_dim(sympy.Max(sympy.Min(value, dim + high_offset), low))
    return to_dim(value)


def slice_params(shape, starts, ends, axes, steps):
    """Per-axis (start, step, count) of a Slice, with ONNX clamping rules."""
    shape = [to_dim(d) for d in shape]  # DaCe hands sympy integers; clamping needs Python ints where dims are known
    rank = len(shape)
    axes = list(range(len(starts))) if axes is None else [normalize_axis(int(a), rank) for a in axes]
    steps = [1] * len(starts) if steps is None else list(steps)
    params = {i: (0, 1, d) for i, d in enumerate(shape)}
    for axis, start, end, step in zip(axes, starts, ends, steps):
        dim = shape[axis]
        if step == 0:
            raise ShapeInferenceError("Slice: step 0")
        if step > 0:
            first, last = _clamp(start, dim, 0, 0), _clamp(end, dim, 0, 0)
        else:
            first, last = _clamp(start, dim, 0, -1), _clamp(end, dim, -1, -1)
        if isinstance(first, int) and isinstance(last, int):
            count = len(range(first, last, step))
        else:
            # An integer division that C++ prints as one (sympy's floor of a quotient prints as a float floor of
            # C++'s integer quotients); not below 0 where a bound was clamped to a size known only at run time.
            span = (last - first) if step > 0 else (first - last)
            count = int_floor(span + abs(step) - 1, abs(step)) if abs(step) != 1 else span
            clamped = sympy.sympify(span).has(sympy.Min, sympy.Max)
            count = to_dim(sympy.Max(0, count) if clamped else count)
        params[axis] = (first, step, count)
    return [params[i] for i in range(rank)]


@op("Slice", since=13)
class Slice(Op):
    value_inputs = (1, 2, 3, 4)

    @classmethod
    def params(cls, shape, values):
        starts = static_int_list(values[1], "Slice starts")
        ends = static_int_list(values[2], "Slice ends")
        axes = static_int_list(values[3], "Slice axes") if len(values) > 3 and values[3] is not None else None
        steps = static_int_list(values[4], "Slice steps") if len(values) > 4 and values[4] is not None else None
        return slice_params(shape, starts, ends, axes, steps)

    @classmethod
    def infer(cls, node, inputs, values):
        x = inputs[0]
        return [TensorType(x.dtype, [count for _, _, count in cls.params(x.shape, values)])]

    @classmethod
    def reference(cls, node, data, *rest):
        params = cls.params(data.shape, [data, *rest])
        index = tuple(slice(first, first + step * count if first + step * count >= 0 else None, step)
                      for first, step, count in params)
        return [data[index].copy()]


@op("Gather", since=13)
class Gather(Op):
    @classmethod
    def infer(cls, node, inputs, values):
        data, indices = inputs
        axis = normalize_axis(node.attr("axis", 0), data.rank)
        return [TensorType(data.dtype, data.shape[:axis] + indices.shape + data.shape[axis + 1:])]

    @classmethod
    def reference(cls, node, data, indices):
        return [np.take(data, indices.astype(np.int64), axis=node.attr("axis", 0))]


@op("Expand", since=13)
class Expand(Op):
    value_inputs = (1, )

    @classmethod
    def infer(cls, node, inputs, values):
        shape = static_int_list(values[1], "Expand's shape input")
        return [TensorType(inputs[0].dtype, broadcast_shapes(inputs[0].shape, shape))]

    @classmethod
    def reference(cls, node, x, shape):
        target = broadcast_shapes(x.shape, [int(s) for s in shape])
        return [np.broadcast_to(x, [int(d) for d in target]).copy()]


@op("Shape", since=13)
class Shape(Op):
    @classmethod
    def bounds(cls, node, rank):
        start, end = node.attr("start", 0), node.attr("end")
        start = max(0, start + rank if start < 0 else start)
        end = rank if end is None else max(0, end + rank if end < 0 else end)
        return min(start, rank), min(end, rank)

    @classmethod
    def infer(cls, node, inputs, values):
        start, end = cls.bounds(node, inputs[0].rank)
        return [TensorType(np.int64, [max(0, end - start)])]

    @classmethod
    def reference(cls, node, x):
        start, end = cls.bounds(node, x.ndim)
        return [np.array(x.shape[start:end], dtype=np.int64)]

    @classmethod
    def known_values(cls, node, inputs, values):
        start, end = cls.bounds(node, inputs[0].rank)
        dims = inputs[0].shape[start:end]
        if all(isinstance(d, int) for d in dims):
            return [np.array(dims, dtype=np.int64)]
        return [np.array(dims, dtype=object)]


@op("Size", since=13)
class Size(Op):
    """The element count as an int64 scalar; known at compile time (symbolic where dims are)."""

    @classmethod
    def infer(cls, node, inputs, values):
        return [TensorType(np.int64, [])]

    @classmethod
    def reference(cls, node, x):
        return [np.array(x.size, dtype=np.int64)]

    @classmethod
    def known_values(cls, node, inputs, values):
        size = _product(inputs[0].shape)
        return [np.array(int(size), dtype=np.int64) if size.is_Integer else np.array(size, dtype=object)]


@op("ConstantOfShape", since=9)
class ConstantOfShape(Op):
    value_inputs = (0, )

    @classmethod
    def fill_value(cls, node) -> np.ndarray:
        value = node.attr("value")
        return np.zeros(1, np.float32) if value is None else decode_tensor_attribute(value).ravel()[:1]

    @classmethod
    def infer(cls, node, inputs, values):
        return [TensorType(cls.fill_value(node).dtype, static_int_list(values[0], "ConstantOfShape's input"))]

    @classmethod
    def reference(cls, node, shape):
        fill = cls.fill_value(node)
        return [np.full([int(s) for s in shape], fill[0], dtype=fill.dtype)]


@op("GatherElements", since=13)
class GatherElements(Op):
    @classmethod
    def infer(cls, node, inputs, values):
        data, indices = inputs
        if data.rank != indices.rank:
            raise ShapeInferenceError("GatherElements: data and indices must have the same rank")
        normalize_axis(node.attr("axis", 0), data.rank)
        return [TensorType(data.dtype, indices.shape)]

    @classmethod
    def reference(cls, node, data, indices):
        axis = normalize_axis(node.attr("axis", 0), data.ndim)
        wrapped = np.where(indices < 0, indices + data.shape[axis], indices)
        return [np.take_along_axis(data, wrapped.astype(np.int64), axis=axis)]


@op("GatherND", since=13)
class GatherND(Op):
    """The first ``batch_dims`` axes of data and indices are shared; each index row picks a slice of the rest."""

    @classmethod
    def infer(cls, node, inputs, values):
        data, indices = inputs
        batch = node.attr("batch_dims", 0)
        depth = indices.shape[-1]
        if not isinstance(depth, int) or depth > data.rank - batch or batch >= indices.rank:
            raise ShapeInferenceError("GatherND: the last dim of indices must be static and <= rank(data) - "
                                      "batch_dims, and batch_dims < rank(indices)")
        return [TensorType(data.dtype, indices.shape[:-1] + data.shape[batch + depth:])]

    @classmethod
    def reference(cls, node, data, indices):
        batch = node.attr("batch_dims", 0)
        if batch:
            rows = [cls._gather(data[b], indices[b]) for b in np.ndindex(*indices.shape[:batch])]
            out_shape = indices.shape[:-1] + data.shape[batch + indices.shape[-1]:]
            return [np.stack(rows).reshape(out_shape) if rows else np.zeros(out_shape, data.dtype)]
        return [cls._gather(data, indices)]

    @staticmethod
    def _gather(data, indices):
        depth = indices.shape[-1]
        flat = indices.reshape(-1, depth)
        wrapped = np.where(flat < 0, flat + np.array(data.shape[:depth]), flat)
        gathered = np.stack([data[tuple(i)] for i in wrapped]) if len(flat) else np.zeros((0, ) + data.shape[depth:],
                                                                                          data.dtype)
        return gathered.reshape(indices.shape[:-1] + data.shape[depth:])


@op("Range", since=11)
class Range(Op):
    value_inputs = (0, 1, 2)

    @classmethod
    def bounds(cls, values) -> list:
        """[start, limit, delta]: ints (possibly symbolic) or floats, all known at compile time."""
        if any(v is None for v in values):
            raise ShapeInferenceError("Range: start, limit and delta must be known at compile time")
        if any(np.asarray(v).dtype.kind in "fO" for v in values) and not all(
                np.asarray(v).dtype.kind in "iuO" for v in values):
            start, limit, delta = (np.asarray(v).ravel()[0] for v in values)
            if not all(isinstance(v, (int, float, np.number)) for v in (start, delta)):
                raise ShapeInferenceError("Range: a float start or delta that depends on input dims")
            if not isinstance(limit, (int, float, np.number)):
                # A dim cast to float (YOLO anchors: Range(0, float(h), 1)) stays symbolic.
                return [float(start), sympy.sympify(limit), float(delta)]
            return [float(start), float(limit), float(delta)]
        return [static_int_list(v, "Range's start/limit/delta")[0] for v in values]

    @classmethod
    def infer(cls, node, inputs, values):
        start, limit, delta = cls.bounds(values[:3])
        if delta == 0:
            raise ShapeInferenceError("Range: delta is 0")
        if isinstance(start, float) and isinstance(limit, sympy.Basic):
            count = sympy.ceiling((limit - sympy.nsimplify(start)) / sympy.nsimplify(delta))
            count = to_dim(sympy.Max(count, 0)) if not count.is_Integer else max(int(count), 0)
        elif isinstance(start, float):
            count = max(int(np.ceil((limit - start) / delta)), 0)
        else:
            count = sympy.ceiling(sympy.Integer(1) * (limit - start) / delta)
            count = max(int(count), 0) if count.is_Integer else to_dim(count)
        # The element type of start: its tensor's, or its folded value's once fold-shape-inputs took it in.
        dtype = inputs[0].dtype if inputs[0] is not None else np.asarray(values[0]).dtype
        return [TensorType(dtype, [count])]

    @classmethod
    def reference(cls, node, start, limit, delta):
        # (scalars; a value fold-shape-inputs took in and the symbols evaluated comes as a 1-element array)
        start, limit, delta = (np.asarray(v).reshape(()) for v in (start, limit, delta))
        return [np.arange(start, limit, delta, dtype=start.dtype)]


@op("CumSum", since=11)
class CumSum(Op):
    value_inputs = (1, )

    @classmethod
    def infer(cls, node, inputs, values):
        normalize_axis(static_int_list(values[1], "CumSum's axis")[0], inputs[0].rank)
        return [TensorType(inputs[0].dtype, inputs[0].shape)]

    scan = staticmethod(np.cumsum)
    identity = 0

    @classmethod
    def reference(cls, node, x, axis):
        axis = normalize_axis(int(np.asarray(axis).ravel()[0]), x.ndim)
        data = np.flip(x, axis) if node.attr("reverse", 0) else x
        if node.attr("exclusive", 0):  # shifted by one along the axis, the identity first
            pad = [(1, 0) if a == axis else (0, 0) for a in range(x.ndim)]
            data = np.pad(data, pad, constant_values=cls.identity)[tuple(
                slice(0, -1) if a == axis else slice(None) for a in range(x.ndim))]
        result = cls.scan(data, axis=axis, dtype=x.dtype)
        return [np.flip(result, axis).copy() if node.attr("reverse", 0) else result]


@op("CumProd", since=26)
class CumProd(CumSum):
    scan = staticmethod(np.cumprod)
    identity = 1


@op("ReverseSequence", since=10)
class ReverseSequence(Op):
    """The first ``sequence_lens[b]`` steps along ``time_axis`` of each batch entry ``b`` reversed, the rest kept."""

    @classmethod
    def infer(cls, node, inputs, values):
        x, lengths = inputs
        if x.rank < 2:
            raise ShapeInferenceError(f"ReverseSequence needs rank >= 2, got {x.rank}")
        time_axis, batch_axis = node.attr("time_axis", 0), node.attr("batch_axis", 1)
        if {time_axis, batch_axis} != {0, 1}:
            raise ShapeInferenceError(f"time_axis and batch_axis must be 0 and 1, got {time_axis} and {batch_axis}")
        if lengths.rank != 1:
            raise ShapeInferenceError(f"sequence_lens must be 1-D, got rank {lengths.rank}")
        return [TensorType(x.dtype, x.shape)]

    @classmethod
    def reference(cls, node, x, lengths):
        time_axis, batch_axis = node.attr("time_axis", 0), node.attr("batch_axis", 1)
        y = x.copy()
        for b, length in enumerate(np.asarray(lengths).ravel()):
            length = int(length)
            source = [slice(None)] * x.ndim
            source[batch_axis], source[time_axis] = b, slice(length - 1, None, -1) if length else slice(0, 0)
            target = [slice(None)] * x.ndim
            target[batch_axis], target[time_axis] = b, slice(0, length)
            y[tuple(target)] = x[tuple(source)]
        return [y]
