"""Linear quantization: QuantizeLinear, DequantizeLinear (per tensor, per axis, or blocked scales),
DynamicQuantizeLinear (uint8 with scale and zero point from the input's range), the integer contractions
ONNX Runtime's dynamic quantizer writes: MatMulInteger and ConvInteger (int32 results), and sdflow's
QuantizedMatMul (domain ai.sdflow: the three in one op, what quantize-dynamic-int8 writes)."""
from __future__ import annotations

import ml_dtypes
import numpy as np

from ..errors import ShapeInferenceError
from ..types import TensorType, is_storage_only, numpy_dtype
from ._base import Op, normalize_axis, onnx_reference, op
from .linalg import matmul_shapes
from .nn import Conv

__all__ = ["scale_index_axes", "INTEGER_LIMITS"]

INTEGER_LIMITS = {np.dtype(t): (np.iinfo(t).min, np.iinfo(t).max) for t in (np.int8, np.uint8, np.int16, np.uint16,
                                                                              np.int32, np.uint32)}
INTEGER_LIMITS.update({np.dtype(t): (int(ml_dtypes.iinfo(t).min), int(ml_dtypes.iinfo(t).max))
                       for t in (ml_dtypes.int4, ml_dtypes.uint4, ml_dtypes.int2, ml_dtypes.uint2)})
# Quantized types without an integer range: float8 (saturating cast of x / scale) and float4.
FLOAT_QUANTIZED = {np.dtype(t) for t in (ml_dtypes.float8_e4m3fn, ml_dtypes.float8_e4m3fnuz, ml_dtypes.float8_e5m2,
                                         ml_dtypes.float8_e5m2fnuz, ml_dtypes.float4_e2m1fn)}


def scale_index_axes(node, x_rank: int, scale_shape) -> tuple[str, int | None, int]:
    """How element x[i...] finds its scale: ("tensor", None, 0), ("axis", axis, 0) or ("blocked", axis, block)."""
    block = node.attr("block_size", 0) or 0
    if len(scale_shape) == 0 or (len(scale_shape) == 1 and scale_shape[0] == 1 and not block):
        return "tensor", None, 0
    axis = normalize_axis(node.attr("axis", 1), x_rank)
    if block:
        if len(scale_shape) != x_rank:
            raise ShapeInferenceError(f"{node.op_type}: blocked scales need the input's rank {x_rank}")
        return "blocked", axis, block
    if len(scale_shape) != 1:
        raise ShapeInferenceError(f"{node.op_type}: per-axis scales must be 1-D, got {list(scale_shape)}")
    return "axis", axis, 0


def _expand_scale(node, x, scale):
    """``scale`` (or a zero point) broadcast to ``x``'s shape."""
    kind, axis, block = scale_index_axes(node, x.ndim, scale.shape)
    if kind == "tensor":
        return scale.reshape(())
    if kind == "axis":
        return scale.reshape([-1 if a == axis else 1 for a in range(x.ndim)])
    return np.repeat(scale, block, axis=axis)[tuple(slice(0, d) for d in x.shape)]


def _quantized_type(node, zero_point_type) -> np.dtype:
    if node.attr("output_dtype"):
        return numpy_dtype(node.attr("output_dtype"))
    return np.dtype(np.uint8) if zero_point_type is None else np.dtype(zero_point_type)


@op("QuantizeLinear", since=13)
class QuantizeLinear(Op):
    @classmethod
    def infer(cls, node, inputs, values):
        dtype = _quantized_type(node, inputs[2].dtype if len(inputs) > 2 and inputs[2] is not None else None)
        if dtype not in INTEGER_LIMITS and dtype not in FLOAT_QUANTIZED:
            raise ShapeInferenceError(f"QuantizeLinear: {dtype} outputs are not supported")
        scale_index_axes(node, inputs[0].rank, inputs[1].shape)
        return [TensorType(dtype, inputs[0].shape)]

    @classmethod
    def reference(cls, node, x, scale, zero_point=None):
        dtype = _quantized_type(node, None if zero_point is None else zero_point.dtype)
        if is_storage_only(dtype):
            return onnx_reference(node, x, scale, zero_point)
        low, high = INTEGER_LIMITS[dtype]
        zp = 0 if zero_point is None else _expand_scale(node, x, zero_point).astype(np.int64)
        y = np.rint(x.astype(np.float64) / _expand_scale(node, x, scale).astype(np.float64)) + zp
        return [np.clip(y, low, high).astype(dtype)]


@op("DequantizeLinear", since=13)
class DequantizeLinear(Op):
    @classmethod
    def infer(cls, node, inputs, values):
        scale_index_axes(node, inputs[0].rank, inputs[1].shape)
        dtype = numpy_dtype(node.attr("output_dtype")) if node.attr("output_dtype") else inputs[1].dtype
        return [TensorType(dtype, inputs[0].shape)]

    @classmethod
    def reference(cls, node, x, scale, zero_point=None):
        if is_storage_only(x.dtype):
            return onnx_reference(node, x, scale, zero_point)
        zp = 0 if zero_point is None else _expand_scale(node, x, zero_point).astype(np.int64)
        dtype = numpy_dtype(node.attr("output_dtype")) if node.attr("output_dtype") else scale.dtype
        return [((x.astype(np.int64) - zp) * _expand_scale(node, x, scale)).astype(dtype)]


@op("DynamicQuantizeLinear", since=11)
class DynamicQuantizeLinear(Op):
    @classmethod
    def infer(cls, node, inputs, values):
        return [TensorType(np.uint8, inputs[0].shape), TensorType(np.float32, []), TensorType(np.uint8, [])]

    @classmethod
    def reference(cls, node, x):
        # In float32 throughout, as ONNX's reference, ONNX Runtime and the kernel compute it (a scale rounded from
        # a double range can differ in its last bit, and then codes on a .5 boundary flip).
        scale, zero = dynamic_quantization(x)
        zero_point = np.uint8(zero)
        y = np.clip(np.rint(x / scale) + zero_point, 0, 255).astype(np.uint8) if scale else np.zeros(x.shape, np.uint8)
        return [y, np.array(scale, np.float32), np.array(zero_point, np.uint8)]


def _zero_point(value, size_name: str, node) -> np.ndarray:
    """A zero point as int32: a scalar, or one per row/column/channel (``size_name`` in errors)."""
    if value is None:
        return np.zeros((), np.int32)
    if value.ndim > 1:
        raise ShapeInferenceError(f"{node.op_type}: a zero point per {size_name} must be 1-D")
    return value.astype(np.int32)


def _check_integer_operands(node, *types) -> None:
    for ttype in types:
        if ttype is not None and np.dtype(ttype.dtype) not in (np.dtype(np.uint8), np.dtype(np.int8)):
            raise ShapeInferenceError(f"{node.op_type}: operands must be uint8 or int8, got {ttype.dtype}")


@op("MatMulInteger", since=10)
class MatMulInteger(Op):
    """(A - a_zero_point) x (B - b_zero_point) in int32; zero points per tensor, per row of A or column of B; B 2-D
    or batched like A."""

    @classmethod
    def infer(cls, node, inputs, values):
        _check_integer_operands(node, inputs[0], inputs[1])
        a, b = inputs[0].shape, inputs[1].shape
        if len(b) > 2 and (len(a) != len(b) or list(a[:-2]) != list(b[:-2])):
            # (attention's Q x K^T: A and B batched alike, what the kernel pairs up)
            raise ShapeInferenceError(f"MatMulInteger: a batched B needs A's batch dims ({list(a)} x {list(b)})")
        return [TensorType(np.int32, matmul_shapes(a, b)[4])]

    @classmethod
    def reference(cls, node, a, b, a_zero_point=None, b_zero_point=None):
        a_zero = _zero_point(a_zero_point, "row", node)
        a32 = a.astype(np.int32) - (a_zero.reshape(-1, 1) if a_zero.ndim and a.ndim > 1 else a_zero)
        return [np.matmul(a32, b.astype(np.int32) - _zero_point(b_zero_point, "column", node)).astype(np.int32)]


@op("ConvInteger", since=10)
class ConvInteger(Op):
    """Conv of (x - x_zero_point) and (w - w_zero_point) in int32 (padding holds the zero point: it adds 0)."""

    @classmethod
    def infer(cls, node, inputs, values):
        _check_integer_operands(node, inputs[0], inputs[1])
        if inputs[0].rank not in (3, 4):
            raise ShapeInferenceError("ConvInteger: only 1-D and 2-D convolutions are supported")
        (y, ) = Conv.infer(node, inputs[:2], values[:2])
        return [TensorType(np.int32, y.shape)]

    @classmethod
    def reference(cls, node, x, w, x_zero_point=None, w_zero_point=None):
        x64 = x.astype(np.float64) - _zero_point(x_zero_point, "tensor", node)
        w_zero = _zero_point(w_zero_point, "output channel", node)
        w64 = w.astype(np.float64) - (w_zero.reshape([-1] + [1] * (w.ndim - 1)) if w_zero.ndim else w_zero)
        return [np.rint(Conv.reference(node, x64, w64)[0]).astype(np.int32)]


def dynamic_quantization(x: np.ndarray) -> tuple[np.float32, np.float32]:
    """(scale, zero point) of DynamicQuantizeLinear over ``x``, in float32 arithmetic as the kernels compute it."""
    low = np.float32(min(0.0, float(x.min(initial=0.0))))
    high = np.float32(max(0.0, float(x.max(initial=0.0))))
    scale = np.float32((high - low) / np.float32(255))
    zero = np.float32(np.clip(np.rint(-low / scale), 0, 255)) if scale else np.float32(0)
    return scale, zero


@op("QuantizedMatMul", since=1, domain="ai.sdflow")
class QuantizedMatMul(Op):
    """Y = dequant(quant(A) x B) + bias: A (float32 [..., K]) quantized to uint8 - statically with a_scale and
    a_zero_point (inputs 4 and 5, one float32 and one uint8 value, from calibration: quantize-static-int8) as
    QuantizeLinear does, saturating, or else when the op runs, as DynamicQuantizeLinear does (over the tensor,
    or with ``per_row`` over each row of K values: quantize-dynamic-int8); B int8 [K, N] with zero point 0
    (symmetric); b_scale float32 [1] or [N] (per column); bias float32 [N] (optional). The integer product sums in
    int32; Y = (acc - zero_a * sum_k B) * (scale_a * b_scale) + bias, in float32. ONNX Runtime's com.microsoft
    DynamicQuantizeMatMul is the per-tensor dynamic case with no zero point of B."""

    @classmethod
    def infer(cls, node, inputs, values):
        a, b, scale = inputs[:3]
        bias = inputs[3] if len(inputs) > 3 else None
        if a.dtype != np.float32 or b.dtype != np.int8 or scale.dtype != np.float32:
            raise ShapeInferenceError(f"QuantizedMatMul: A float32, B int8 and b_scale float32, got {a.dtype}, "
                                      f"{b.dtype}, {scale.dtype}")
        if b.rank != 2 or a.rank < 1:
            raise ShapeInferenceError(f"QuantizedMatMul: B must be 2-D and A at least 1-D ({a} x {b})")
        n = b.shape[1]
        if scale.rank != 1 or scale.shape[0] not in (1, n):
            raise ShapeInferenceError(f"QuantizedMatMul: b_scale must be [1] or [{n}], got {list(scale.shape)}")
        if bias is not None and (bias.dtype != np.float32 or list(bias.shape) != [n]):
            raise ShapeInferenceError(f"QuantizedMatMul: bias must be float32 [{n}], got {bias}")
        a_scale, a_zero = (list(inputs[4:6]) + [None, None])[:2]
        if (a_scale is None) != (a_zero is None) or a_scale is not None and (
                a_scale.dtype != np.float32 or a_zero.dtype != np.uint8 or a_scale.shape != (1,)
                or a_zero.shape != (1,)):
            raise ShapeInferenceError("QuantizedMatMul: a_scale and a_zero_point come together, float32 [1] and "
                                      "uint8 [1]")
        return [TensorType(np.float32, matmul_shapes(a.shape, b.shape)[4])]

    @classmethod
    def reference(cls, node, a, b, b_scale, bias=None, a_scale=None, a_zero_point=None):
        k, n = b.shape
        rows = a.reshape(-1, k).astype(np.float32)
        if a_scale is not None:
            quant = [(np.float32(a_scale.reshape(-1)[0]), np.float32(a_zero_point.reshape(-1)[0]))] * len(rows)
        elif node.attr("per_row", 0):
            quant = [dynamic_quantization(row) for row in rows]
        else:
            quant = [dynamic_quantization(rows)] * len(rows)
        scales = np.array([s for s, _ in quant], np.float32).reshape(-1, 1)
        zeros = np.array([z for _, z in quant], np.float32).reshape(-1, 1)
        with np.errstate(divide="ignore", invalid="ignore"):
            codes = np.where(scales != 0, np.clip(np.rint(rows / np.where(scales != 0, scales, 1)) + zeros, 0, 255), 0)
        acc = codes.astype(np.int64) @ b.astype(np.int64)
        fixed = (acc - zeros.astype(np.int64) * b.astype(np.int64).sum(axis=0)).astype(np.int32).astype(np.float32)
        y = fixed * (scales * b_scale.astype(np.float32).reshape(1, -1))
        if bias is not None:
            y = y + bias.astype(np.float32)
        return [y.astype(np.float32).reshape(*a.shape[:-1], n)]
