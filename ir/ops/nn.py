"""Convolution (1-D and 2-D spatial), pooling (1-D to 3-D) and normalisations; NCHW layout."""
from __future__ import annotations

import dataclasses

import dace
import numpy as np
import sympy

from ..errors import ShapeInferenceError
from ..types import TensorType, to_dim
from ._base import Op, normalize_axis, op, same_as_input

__all__ = ["WindowGeometry", "window_geometry", "conv_transpose_geometry", "is_pointwise", "DEPTHWISE_ROW_WIDTH",
           "small_depthwise_plane"]


@dataclasses.dataclass
class WindowGeometry:
    """Sliding-window parameters per spatial axis (possibly symbolic pads / output sizes)."""

    kernel: list
    strides: list
    dilations: list
    pads_begin: list
    pads_end: list
    out: list


# Depthwise convolutions with a column stride of 1 run as rows read straight from the image only when their output
# rows are at most this wide (wider ones run faster over a padded plane: codegen.lowering.nn), and only those are
# fused with the 1x1 convolution before them (passes.fusion.fuse_conv_depthwise).
DEPTHWISE_ROW_WIDTH = 32


def small_depthwise_plane(out_width, window_taps: int) -> bool:
    """Whether a depthwise convolution (one input channel per output channel) runs with vectors over channels
    (codegen/kernels/conv.h ``conv_depthwise_channels``): output rows of at most 4, or of at most 7 under a window
    of 25 taps or more. Measured against the row form (``benchmarks/kernels/conv_bench.cpp``, docs/kernels.md):
    3-9x faster on 2x2 and 4x4 planes, 1.2-1.3x on 7x7 ones under 5x5 windows, equal on 7x7 under 3x3, slower from
    8x8 (transposing the planes costs more than the lanes it fills). Such convolutions are not fused with the 1x1
    convolution before them (passes.fusion.fuse_conv_depthwise)."""
    if not getattr(out_width, "is_number", True) or isinstance(out_width, str):
        return False
    width = int(out_width)
    return width <= 4 or (width <= 7 and window_taps >= 25)


def is_pointwise(node, kernel) -> bool:
    """Whether a Conv with this kernel shape is a plain 1x1 one: unit kernel, strides and dilations, no padding
    (its input is its im2col matrix; fuse-conv-depthwise fuses it)."""
    return all(k == 1 for k in kernel) and not any(
        node.attr(a) and any(v != (1 if a != "pads" else 0) for v in node.attr(a))
        for a in ("strides", "pads", "dilations")) and node.attr("auto_pad", "NOTSET") in ("NOTSET", "VALID")


def window_geometry(node, spatial, kernel, ceil_mode=False, max_rank=2) -> WindowGeometry:
    n = len(spatial)
    if not 1 <= n <= max_rank:
        raise ShapeInferenceError(f"{node.op_type}: only 1-D to {max_rank}-D spatial inputs are supported, got {n}-D")
    if len(kernel) != n:
        raise ShapeInferenceError(f"{node.op_type}: kernel_shape {list(kernel)} does not match {n} spatial dims")
    strides = list(node.attr("strides") or [1] * n)
    dilations = list(node.attr("dilations") or [1] * n)
    pads = list(node.attr("pads") or [0] * (2 * n))
    auto_pad = node.attr("auto_pad", "NOTSET")
    begin, end, out = [], [], []
    for i in range(n):
        extent = dilations[i] * (kernel[i] - 1) + 1
        if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
            size = to_dim(sympy.ceiling(sympy.Integer(1) * spatial[i] / strides[i]))
            total = to_dim(sympy.Max(0, (size - 1) * strides[i] + extent - spatial[i]))
            small = to_dim(sympy.floor(sympy.Integer(1) * total / 2))
            big = to_dim(total - small)
            begin.append(small if auto_pad == "SAME_UPPER" else big)
            end.append(big if auto_pad == "SAME_UPPER" else small)
            out.append(size)
            continue
        if auto_pad == "VALID":
            pads[i], pads[i + n] = 0, 0
        begin.append(pads[i])
        end.append(pads[i + n])
        span = spatial[i] + pads[i] + pads[i + n] - extent
        if isinstance(to_dim(span), int):
            size = (sympy.ceiling if ceil_mode else sympy.floor)(sympy.Integer(1) * span / strides[i]) + 1
        else:
            # DaCe's integer division, which C++ code prints as such (sympy's floor(h/2 - 1/2) printed as
            # floor((h / 2) - (1 / 2)): a double, with 1 / 2 == 0).
            size = (dace.symbolic.int_ceil if ceil_mode else dace.symbolic.int_floor)(span, strides[i]) + 1
        if ceil_mode and isinstance(to_dim(size), int) and (to_dim(size) - 1) * strides[i] >= spatial[i] + pads[i]:
            size -= 1
        out.append(to_dim(size))
    if any(isinstance(o, int) and o <= 0 for o in out):
        raise ShapeInferenceError(f"{node.op_type}: window larger than the padded input")
    return WindowGeometry(list(kernel), strides, dilations, begin, end, out)


def padded_windows(x, geo: WindowGeometry, pad_value, beyond_value=None):
    """Yields (window index, strided view of the padded input) for every kernel offset. Windows that reach
    past the padded input (ceil_mode) see ``beyond_value`` there (default: ``pad_value``)."""
    n = len(geo.kernel)
    spatial = x.shape[x.ndim - n:]
    padding = [(0, 0)] * (x.ndim - n) + [(int(b), int(e)) for b, e in zip(geo.pads_begin, geo.pads_end)]
    padded = np.pad(x, padding, constant_values=pad_value)
    beyond = [max(0, (int(geo.out[i]) - 1) * geo.strides[i] + geo.dilations[i] * (geo.kernel[i] - 1) + 1
                  - (spatial[i] + padding[x.ndim - n + i][0] + padding[x.ndim - n + i][1])) for i in range(n)]
    if any(beyond):
        padded = np.pad(padded, [(0, 0)] * (x.ndim - n) + [(0, b) for b in beyond],
                        constant_values=pad_value if beyond_value is None else beyond_value)
    for offset in np.ndindex(*geo.kernel):
        index = [slice(None)] * (x.ndim - n)
        for i in range(n):
            start = offset[i] * geo.dilations[i]
            index.append(slice(start, start + geo.strides[i] * (int(geo.out[i]) - 1) + 1, geo.strides[i]))
        yield offset, padded[tuple(index)]


@op("Conv", since=11)
class Conv(Op):
    @classmethod
    def geometry(cls, node, x_shape, w_shape):
        kernel = node.attr("kernel_shape") or list(w_shape[2:])
        return window_geometry(node, list(x_shape[2:]), kernel, max_rank=3)

    @classmethod
    def infer(cls, node, inputs, values):
        x, w = inputs[0], inputs[1]
        group = node.attr("group", 1)
        if x.rank != w.rank or (isinstance(x.shape[1], int) and x.shape[1] != w.shape[1] * group):
            raise ShapeInferenceError(f"Conv: input {x} and weight {w} do not match (group={group})")
        geo = cls.geometry(node, x.shape, w.shape)
        return [TensorType(x.dtype, [x.shape[0], w.shape[0]] + geo.out)]

    @classmethod
    def reference(cls, node, x, w, b=None):
        geo = cls.geometry(node, x.shape, w.shape)
        group = node.attr("group", 1)
        cin, cout = w.shape[1], w.shape[0] // group
        y = np.zeros([x.shape[0], w.shape[0]] + [int(o) for o in geo.out], np.float64)
        for offset, window in padded_windows(x.astype(np.float64), geo, 0.0):
            for g in range(group):
                kernel = w[(slice(g * cout, (g + 1) * cout), slice(None)) + offset].astype(np.float64)
                y[:, g * cout:(g + 1) * cout] += np.einsum("nc...,mc->nm...", window[:, g * cin:(g + 1) * cin], kernel)
        if b is not None:
            y += b.reshape([1, -1] + [1] * len(geo.kernel))
        return [y.astype(x.dtype)]


def conv_transpose_geometry(node, x_shape, w_shape) -> WindowGeometry:
    """Kernel, strides, dilations, pads and output size of ConvTranspose per axis, as ONNX's reference derives
    them (explicit pads win; SAME_* pads split the total padding; output_shape given as is)."""
    n = len(x_shape) - 2
    if not 1 <= n <= 3:
        raise ShapeInferenceError(f"ConvTranspose: only 1-D to 3-D spatial inputs are supported, got {n}-D")
    kernel = list(node.attr("kernel_shape") or w_shape[2:])
    strides = list(node.attr("strides") or [1] * n)
    dilations = list(node.attr("dilations") or [1] * n)
    output_padding = list(node.attr("output_padding") or [0] * n)
    output_shape = node.attr("output_shape")
    output_shape = list(output_shape[-n:]) if output_shape else None
    auto_pad = node.attr("auto_pad", "NOTSET")
    pads = node.attr("pads")
    full = [to_dim(strides[i] * (x_shape[i + 2] - 1) + output_padding[i] + (kernel[i] - 1) * dilations[i] + 1)
            for i in range(n)]
    if pads is None and auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        out = output_shape or [to_dim(x_shape[i + 2] * strides[i]) for i in range(n)]
        total = [to_dim(f - o) for f, o in zip(full, out)]
        small = [to_dim(sympy.floor(sympy.Integer(1) * t / 2)) for t in total]
        big = [to_dim(t - s) for t, s in zip(total, small)]
        begin, end = (small, big) if auto_pad == "SAME_UPPER" else (big, small)
    else:
        pads = list(pads or [0] * (2 * n))
        begin, end = pads[:n], pads[n:]
        out = output_shape or [to_dim(f - b - e) for f, b, e in zip(full, begin, end)]
    if any(isinstance(o, int) and o <= 0 for o in out):
        raise ShapeInferenceError(f"ConvTranspose: empty output {out}")
    return WindowGeometry(kernel, strides, dilations, begin, end, [to_dim(o) for o in out])


@op("ConvTranspose", since=11)
class ConvTranspose(Op):
    """The gradient of Conv: every input pixel scatters weight[c, m] into the output (weight [C, M/group, k...])."""

    @classmethod
    def infer(cls, node, inputs, values):
        x, w = inputs[0], inputs[1]
        group = node.attr("group", 1)
        if x.rank != w.rank or (isinstance(x.shape[1], int) and x.shape[1] != w.shape[0]):
            raise ShapeInferenceError(f"ConvTranspose: input {x} and weight {w} do not match (group={group})")
        geo = conv_transpose_geometry(node, x.shape, w.shape)
        return [TensorType(x.dtype, [x.shape[0], to_dim(w.shape[1] * group)] + geo.out)]

    @classmethod
    def reference(cls, node, x, w, b=None):
        geo = conv_transpose_geometry(node, x.shape, w.shape)
        group = node.attr("group", 1)
        cg, mg = x.shape[1] // group, w.shape[1]
        n = x.ndim - 2
        out = [int(o) for o in geo.out]
        y = np.zeros((x.shape[0], mg * group, *out), np.float64)
        for offset in np.ndindex(*geo.kernel):
            # Output positions i * stride + k * dilation - pad of every input position i (those inside).
            target, source = [], []
            for i in range(n):
                positions = np.arange(x.shape[2 + i]) * geo.strides[i] + offset[i] * geo.dilations[i] \
                    - int(geo.pads_begin[i])
                inside = (positions >= 0) & (positions < out[i])
                target.append(positions[inside])
                source.append(np.nonzero(inside)[0])
            for g in range(group):
                xs = x[:, g * cg:(g + 1) * cg][(slice(None), slice(None)) + np.ix_(*source)].astype(np.float64)
                kernel = w[g * cg:(g + 1) * cg, :][(slice(None), slice(None)) + offset].astype(np.float64)
                contribution = np.einsum("nc...,cm->nm...", xs, kernel)
                view = y[:, g * mg:(g + 1) * mg]
                view[(slice(None), slice(None)) + np.ix_(*target)] += contribution
        if b is not None:
            y += b.reshape([1, -1] + [1] * n)
        return [y.astype(x.dtype)]


@op("CausalConvWithState", since=27)
class CausalConvWithState(Op):
    """Depthwise causal Conv1d over [past_state, input] (weight [C, 1, K]), an optional SiLU, and the last K-1
    positions as the next state."""

    @classmethod
    def infer(cls, node, inputs, values):
        x, w = inputs[0], inputs[1]
        if x.rank != 3 or w.rank != 3:
            raise ShapeInferenceError(f"CausalConvWithState: input and weight must be rank 3, got {x} and {w}")
        if node.attr("activation", "none") not in ("none", "silu", "swish"):
            raise ShapeInferenceError(f"CausalConvWithState: unknown activation {node.attr('activation')!r}")
        state = TensorType(x.dtype, [x.shape[0], x.shape[1], to_dim(w.shape[2] - 1)])
        return [TensorType(x.dtype, x.shape), state]

    @classmethod
    def reference(cls, node, x, w, bias=None, past_state=None):
        k = w.shape[2]
        past = np.zeros(x.shape[:2] + (k - 1, ), x.dtype) if past_state is None else past_state
        padded = np.concatenate([past, x], axis=2)
        acc = np.zeros(x.shape, np.float64)
        for j in range(k):
            acc += padded[:, :, j:j + x.shape[2]] * w[:, 0, j][None, :, None]
        if bias is not None:
            acc += bias[None, :, None]
        y = acc.astype(x.dtype)
        if node.attr("activation", "none") in ("silu", "swish"):
            y32 = y.astype(np.float32)
            y = (y32 / (1 + np.exp(-y32))).astype(x.dtype)
        return [y, padded[:, :, padded.shape[2] - (k - 1):]]


class Pool(Op):
    """MaxPool / AveragePool / LpPool over 1-3 spatial dims."""

    @classmethod
    def geometry(cls, node, x_shape):
        return window_geometry(node, list(x_shape[2:]), node.attr("kernel_shape"), bool(node.attr("ceil_mode", 0)),
                               max_rank=3)

    @classmethod
    def infer(cls, node, inputs, values):
        x = inputs[0]
        y = TensorType(x.dtype, list(x.shape[:2]) + cls.geometry(node, x.shape).out)
        return [y] + [TensorType(np.dtype(np.int64), y.shape)] * (len(node.onnx_outputs) - 1)


@op("MaxPool", since=12)
class MaxPool(Pool):
    """Optional second output: the flat index (into the whole input) of each maximum; ``storage_order`` 1
    counts the spatial dims column-major."""

    @classmethod
    def reference(cls, node, x):
        geo = cls.geometry(node, x.shape)
        windows = np.stack([w for _, w in padded_windows(x, geo, -np.inf)])
        result = [np.max(windows, axis=0).astype(x.dtype)]
        if len(node.onnx_outputs) > 1:
            offsets = np.array(list(np.ndindex(*geo.kernel)))
            best = offsets[np.argmax(windows, axis=0)]  # [..., n] kernel offset of the first maximum
            n = len(geo.kernel)
            spatial = x.shape[2:]
            position = [np.arange(int(geo.out[i])).reshape([-1] + [1] * (n - 1 - i)) * geo.strides[i]
                        - geo.pads_begin[i] + best[..., i] * geo.dilations[i] for i in range(n)]
            order = range(n) if node.attr("storage_order", 0) == 0 else reversed(range(n))
            flat = np.zeros(result[0].shape, np.int64)
            for i in order:
                flat = flat * spatial[i] + position[i]
            plane = np.arange(x.shape[0] * x.shape[1]).reshape(x.shape[:2] + (1, ) * n)
            result.append(flat + plane * int(np.prod(spatial)))
        return result


@op("AveragePool", since=11)
class AveragePool(Pool):
    @classmethod
    def reference(cls, node, x):
        geo = cls.geometry(node, x.shape)
        total = sum(w.astype(np.float64) for _, w in padded_windows(x, geo, 0.0))
        ones = np.ones_like(x[:1, :1], np.float64)
        pad_value = 1.0 if node.attr("count_include_pad", 0) else 0.0
        counts = sum(w for _, w in padded_windows(ones, geo, pad_value, beyond_value=0.0))
        return [(total / counts).astype(x.dtype)]


@op("LpPool", since=11)
class LpPool(Pool):
    """(sum of |x|^p over the window)^(1/p); padding contributes nothing."""

    @classmethod
    def reference(cls, node, x):
        geo = cls.geometry(node, x.shape)
        p = node.attr("p", 2)
        total = sum(np.abs(w.astype(np.float64)) ** p for _, w in padded_windows(x, geo, 0.0))
        return [(total ** (1.0 / p)).astype(x.dtype)]


@op("GlobalAveragePool", since=1)
class GlobalAveragePool(Op):
    @classmethod
    def infer(cls, node, inputs, values):
        x = inputs[0]
        return [TensorType(x.dtype, list(x.shape[:2]) + [1] * (x.rank - 2))]

    @classmethod
    def reference(cls, node, x):
        return [x.mean(axis=tuple(range(2, x.ndim)), keepdims=True).astype(x.dtype)]


@op("GlobalMaxPool", since=1)
class GlobalMaxPool(GlobalAveragePool):
    @classmethod
    def reference(cls, node, x):
        return [x.max(axis=tuple(range(2, x.ndim)), keepdims=True)]


@op("GlobalLpPool", since=2)
class GlobalLpPool(GlobalAveragePool):
    @classmethod
    def reference(cls, node, x):
        p = node.attr("p", 2)
        total = (np.abs(x.astype(np.float64)) ** p).sum(axis=tuple(range(2, x.ndim)), keepdims=True)
        return [(total ** (1.0 / p)).astype(x.dtype)]


@op("MeanVarianceNormalization", since=9)
class MeanVarianceNormalization(Op):
    """(x - E[x]) / (sqrt(E[x^2] - E[x]^2) + 1e-9) over ``axes`` (default N, H, W), as ONNX's function body."""

    @classmethod
    def infer(cls, node, inputs, values):
        for axis in node.attr("axes") or [0, 2, 3]:
            normalize_axis(axis, inputs[0].rank)
        return [same_as_input(inputs)]

    @classmethod
    def reference(cls, node, x):
        axes = tuple(normalize_axis(a, x.ndim) for a in node.attr("axes") or [0, 2, 3])
        x64 = x.astype(np.float64)
        mean = x64.mean(axis=axes, keepdims=True)
        deviation = np.sqrt((x64 ** 2).mean(axis=axes, keepdims=True) - mean ** 2)
        return [((x64 - mean) / (deviation + 1e-9)).astype(x.dtype)]


def _normalized(x, axes, epsilon):
    x64 = x.astype(np.float64)
    mean = x64.mean(axis=axes, keepdims=True)
    return (x64 - mean) / np.sqrt(((x64 - mean) ** 2).mean(axis=axes, keepdims=True) + epsilon)


@op("InstanceNormalization", since=6)
class InstanceNormalization(Op):
    """Per sample and channel over the spatial dims, then scale[c] and bias[c]."""

    @classmethod
    def infer(cls, node, inputs, values):
        if inputs[0].rank < 3:
            raise ShapeInferenceError("InstanceNormalization: the input needs rank >= 3 (N, C, spatial...)")
        return [same_as_input(inputs)]

    @classmethod
    def reference(cls, node, x, scale, bias):
        channel = [1, -1] + [1] * (x.ndim - 2)
        y = _normalized(x, tuple(range(2, x.ndim)), node.attr("epsilon", 1e-5))
        return [(y * scale.reshape(channel) + bias.reshape(channel)).astype(x.dtype)]


@op("GroupNormalization", since=21)
class GroupNormalization(Op):
    """Per sample over each group of C/num_groups channels and the spatial dims, then scale[c] and bias[c]."""

    @classmethod
    def infer(cls, node, inputs, values):
        channels, groups = inputs[0].shape[1], node.attr("num_groups")
        if isinstance(channels, int) and channels % groups:
            raise ShapeInferenceError(f"GroupNormalization: {channels} channels in {groups} groups")
        return [same_as_input(inputs)]

    @classmethod
    def reference(cls, node, x, scale, bias):
        n, c = x.shape[:2]
        groups = node.attr("num_groups")
        grouped = x.reshape(n, groups, -1)
        y = _normalized(grouped, (2, ), node.attr("epsilon", 1e-5)).reshape(x.shape)
        channel = [1, -1] + [1] * (x.ndim - 2)
        return [(y * scale.reshape(channel) + bias.reshape(channel)).astype(x.dtype)]


@op("LpNormalization", since=1)
class LpNormalization(Op):
    @classmethod
    def infer(cls, node, inputs, values):
        if node.attr("p", 2) not in (1, 2):
            raise ShapeInferenceError(f"LpNormalization: p must be 1 or 2, not {node.attr('p')}")
        return [same_as_input(inputs)]

    @classmethod
    def reference(cls, node, x):
        axis = node.attr("axis", -1)
        x64 = x.astype(np.float64)
        norm = np.abs(x64).sum(axis=axis, keepdims=True) if node.attr("p", 2) == 1 else \
            np.sqrt((x64 * x64).sum(axis=axis, keepdims=True))
        with np.errstate(divide="ignore", invalid="ignore"):
            return [np.where(norm == 0, 0, x64 / norm).astype(x.dtype)]  # a zero vector stays zero


@op("LRN", since=13)
class LRN(Op):
    """Local response normalisation across channels: x / (bias + alpha / size * sum of x^2 over the window)^beta."""

    @classmethod
    def infer(cls, node, inputs, values):
        if inputs[0].rank < 3:
            raise ShapeInferenceError("LRN: the input needs rank >= 3 (N, C, spatial...)")
        return [same_as_input(inputs)]

    @classmethod
    def reference(cls, node, x):
        size = node.attr("size")
        alpha, beta, bias = node.attr("alpha", 1e-4), node.attr("beta", 0.75), node.attr("bias", 1.0)
        squares = x.astype(np.float64) ** 2
        total = np.zeros_like(squares)
        for c in range(x.shape[1]):
            low, high = max(0, c - (size - 1) // 2), min(x.shape[1], c + (size - 1) - (size - 1) // 2 + 1)
            total[:, c] = squares[:, low:high].sum(axis=1)
        return [(x / (bias + alpha / size * total) ** beta).astype(x.dtype)]


@op("BatchNormalization", since=9)
class BatchNormalization(Op):
    @classmethod
    def infer(cls, node, inputs, values):
        if node.attr("training_mode", 0) or len([o for o in node.onnx_outputs if o]) > 1:
            raise ShapeInferenceError("BatchNormalization: training mode is not supported (inference only)")
        return [same_as_input(inputs)]

    @classmethod
    def reference(cls, node, x, scale, bias, mean, var):
        shape = [1, -1] + [1] * (x.ndim - 2)
        inv = 1 / np.sqrt(var.astype(np.float64) + node.attr("epsilon", 1e-5))
        y = (x - mean.reshape(shape)) * (scale * inv).reshape(shape) + bias.reshape(shape)
        return [y.astype(x.dtype)]
