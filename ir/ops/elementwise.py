"""Element-wise ops: unary math, binary arithmetic with numpy broadcasting, comparison, Where, Cast, Clip."""
from __future__ import annotations

import math

import numpy as np
import sympy

from ..errors import ShapeInferenceError
from ..types import TensorType, numpy_dtype, onnx_dtype
from ._base import Op, broadcast_shapes, op

__all__ = ["Elementwise", "ELEMENTWISE_OPS"]

ELEMENTWISE_OPS: set[str] = set()


class Elementwise(Op):
    """Output shape is the broadcast of all present inputs; dtype that of ``dtype_source`` (or ``out_dtype``)."""

    dtype_source = 0
    out_dtype = None

    @classmethod
    def infer(cls, node, inputs, values):
        present = [t for t in inputs if t is not None]
        dtype = cls.out_dtype if cls.out_dtype is not None else inputs[cls.dtype_source].dtype
        same = [t.dtype for i, t in enumerate(inputs) if t is not None and i in cls.same_dtype_inputs()]
        if any(d != same[0] for d in same):
            raise ShapeInferenceError(f"{node.op_type} inputs have different element types: "
                                      + ", ".join(str(d) for d in same))
        return [TensorType(dtype, broadcast_shapes(*(t.shape for t in present)))]

    @classmethod
    def same_dtype_inputs(cls):
        return range(8)


def elementwise(op_type, since=13, **kw):
    def decorate(cls):
        ELEMENTWISE_OPS.add(op_type)
        return op(op_type, since=since, **kw)(cls)
    return decorate


def _unary(op_type, func, since=13):
    @elementwise(op_type, since=since)
    class Unary(Elementwise):
        @classmethod
        def reference(cls, node, x):
            return [np.asarray(func(node, x)).astype(x.dtype)]

    Unary.__name__ = Unary.__qualname__ = op_type
    return Unary


_erf = np.vectorize(math.erf, otypes=[np.float64])

Sqrt = _unary("Sqrt", lambda n, x: np.sqrt(x))
Reciprocal = _unary("Reciprocal", lambda n, x: 1 / x)
Exp = _unary("Exp", lambda n, x: np.exp(x))
Log = _unary("Log", lambda n, x: np.log(x))
Tanh = _unary("Tanh", lambda n, x: np.tanh(x))
Erf = _unary("Erf", lambda n, x: _erf(x))
Relu = _unary("Relu", lambda n, x: np.maximum(x, 0))
Identity = _unary("Identity", lambda n, x: x.copy())
LeakyRelu = _unary("LeakyRelu", lambda n, x: np.where(x >= 0, x, n.attr("alpha", 0.01) * x), since=6)
Sigmoid = _unary("Sigmoid", lambda n, x: 1 / (1 + np.exp(-x.astype(np.float64))))


def _gelu(node, x):
    x64 = x.astype(np.float64)
    if node.attr("approximate", "none") == "tanh":
        return 0.5 * x64 * (1 + np.tanh(np.sqrt(2 / np.pi) * (x64 + 0.044715 * x64 ** 3)))
    return 0.5 * x64 * (1 + _erf(x64 / np.sqrt(2)))


Gelu = _unary("Gelu", _gelu, since=20)


def _int_div(a, b):
    if a.dtype == object or b.dtype == object:
        return np.array([x // y for x, y in np.broadcast(a, b)], dtype=object).reshape(np.broadcast_shapes(
            a.shape, b.shape))
    if np.issubdtype(a.dtype, np.integer):
        return (np.sign(a) * np.sign(b) * (np.abs(a) // np.abs(b))).astype(a.dtype)
    return a / b


def _binary(op_type, func, out_dtype=None):
    @elementwise(op_type)
    class Binary(Elementwise):
        @classmethod
        def reference(cls, node, a, b):
            result = np.asarray(func(a, b))
            dtype = out_dtype if out_dtype is not None else a.dtype
            symbolic = object in (a.dtype, b.dtype) and out_dtype is None  # shape arithmetic stays symbolic
            return [result.astype(object) if symbolic else result.astype(dtype)]

    Binary.out_dtype = out_dtype
    Binary.__name__ = Binary.__qualname__ = op_type
    return Binary


Neg = _unary("Neg", lambda n, x: -x)
Abs = _unary("Abs", lambda n, x: np.abs(x))
Floor = _unary("Floor", lambda n, x: np.floor(x))
Ceil = _unary("Ceil", lambda n, x: np.ceil(x))
Not = _unary("Not", lambda n, x: np.logical_not(x), since=1)


def _f64(func):
    """A float function evaluated in float64 (the oracle's precision), for ``_unary``."""
    return lambda node, x: func(node, x.astype(np.float64))


Sin = _unary("Sin", _f64(lambda n, x: np.sin(x)))
Cos = _unary("Cos", _f64(lambda n, x: np.cos(x)))
Tan = _unary("Tan", _f64(lambda n, x: np.tan(x)))
Asin = _unary("Asin", _f64(lambda n, x: np.arcsin(x)))
Acos = _unary("Acos", _f64(lambda n, x: np.arccos(x)))
Atan = _unary("Atan", _f64(lambda n, x: np.arctan(x)))
Sinh = _unary("Sinh", _f64(lambda n, x: np.sinh(x)))
Cosh = _unary("Cosh", _f64(lambda n, x: np.cosh(x)))
Asinh = _unary("Asinh", _f64(lambda n, x: np.arcsinh(x)))
Acosh = _unary("Acosh", _f64(lambda n, x: np.arccosh(x)))
Atanh = _unary("Atanh", _f64(lambda n, x: np.arctanh(x)))
Sign = _unary("Sign", lambda n, x: np.sign(x))
Round = _unary("Round", lambda n, x: np.round(x))  # halves to even, as ONNX specifies
Softplus = _unary("Softplus", _f64(lambda n, x: np.log(np.exp(x) + 1)))
Softsign = _unary("Softsign", _f64(lambda n, x: x / (1 + np.abs(x))))
Elu = _unary("Elu", _f64(lambda n, x: np.where(x < 0, n.attr("alpha", 1.0) * (np.exp(x) - 1), x)))
Selu = _unary("Selu", _f64(lambda n, x: n.attr("gamma", 1.0507009873554805) * np.where(
    x > 0, x, n.attr("alpha", 1.6732632423543772) * (np.exp(x) - 1))))
Celu = _unary("Celu", _f64(lambda n, x: np.maximum(0, x) + np.minimum(
    0, n.attr("alpha", 1.0) * (np.exp(x / n.attr("alpha", 1.0)) - 1))))
HardSigmoid = _unary("HardSigmoid", _f64(lambda n, x: np.clip(n.attr("alpha", 0.2) * x + n.attr("beta", 0.5), 0, 1)))
HardSwish = _unary("HardSwish", _f64(lambda n, x: x * np.clip(x / 6 + 0.5, 0, 1)))
ThresholdedRelu = _unary("ThresholdedRelu", lambda n, x: np.where(x > n.attr("alpha", 1.0), x, 0))
Mish = _unary("Mish", _f64(lambda n, x: x * np.tanh(np.log1p(np.exp(x)))))
Shrink = _unary("Shrink", lambda n, x: np.where(x < -n.attr("lambd", 0.5), x + n.attr("bias", 0.0), np.where(
    x > n.attr("lambd", 0.5), x - n.attr("bias", 0.0), 0)))
BitwiseNot = _unary("BitwiseNot", lambda n, x: np.invert(x), since=18)
Swish = _unary("Swish", _f64(lambda n, x: x / (1 + np.exp(-n.attr("alpha", 1.0) * x))), since=24)


@elementwise("SwiGLU", since=28)
class SwiGLU(Elementwise):
    """a * sigmoid(alpha * a) * b on equal shapes (the gate of LLaMA-style MLPs)."""

    @classmethod
    def infer(cls, node, inputs, values):
        if inputs[0].shape != inputs[1].shape:
            raise ShapeInferenceError(f"SwiGLU: A {inputs[0]} and B {inputs[1]} must have the same shape")
        return super().infer(node, inputs, values)

    @classmethod
    def reference(cls, node, a, b):
        a64 = a.astype(np.float64)
        return [(a64 / (1 + np.exp(-node.attr("alpha", 1.0) * a64)) * b).astype(a.dtype)]


@elementwise("IsInf", since=10)
class IsInf(Elementwise):
    out_dtype = np.dtype(bool)

    @classmethod
    def reference(cls, node, x):
        return [(np.isposinf(x) & bool(node.attr("detect_positive", 1)))
                | (np.isneginf(x) & bool(node.attr("detect_negative", 1)))]


@elementwise("IsNaN")
class IsNaN(Elementwise):
    out_dtype = np.dtype(bool)

    @classmethod
    def reference(cls, node, x):
        return [np.isnan(x)]


Add = _binary("Add", lambda a, b: a + b)
Sub = _binary("Sub", lambda a, b: a - b)
Mul = _binary("Mul", lambda a, b: a * b)
Div = _binary("Div", _int_div)
Equal = _binary("Equal", lambda a, b: a == b, out_dtype=np.dtype(bool))
Less = _binary("Less", lambda a, b: a < b, out_dtype=np.dtype(bool))
LessOrEqual = _binary("LessOrEqual", lambda a, b: a <= b, out_dtype=np.dtype(bool))
Greater = _binary("Greater", lambda a, b: a > b, out_dtype=np.dtype(bool))
GreaterOrEqual = _binary("GreaterOrEqual", lambda a, b: a >= b, out_dtype=np.dtype(bool))
And = _binary("And", np.logical_and, out_dtype=np.dtype(bool))
Or = _binary("Or", np.logical_or, out_dtype=np.dtype(bool))
Xor = _binary("Xor", np.logical_xor, out_dtype=np.dtype(bool))
BitwiseAnd = _binary("BitwiseAnd", np.bitwise_and)
BitwiseOr = _binary("BitwiseOr", np.bitwise_or)
BitwiseXor = _binary("BitwiseXor", np.bitwise_xor)
PRelu = _binary("PRelu", lambda x, slope: np.where(x < 0, x * slope, x))


def _mod(node, a, b):
    if node.attr("fmod", 0):
        return np.fmod(a, b)  # the sign of the dividend, as C's fmod and %
    return np.mod(a, b)  # the sign of the divisor, as Python's %


@elementwise("Mod", since=10)
class Mod(Elementwise):
    @classmethod
    def reference(cls, node, a, b):
        with np.errstate(divide="ignore", invalid="ignore"):
            return [np.asarray(_mod(node, a, b)).astype(a.dtype)]


@elementwise("BitShift", since=11)
class BitShift(Elementwise):
    """A shift by a negative amount or by the type's width or more gives 0 (LEFT) or the sign fill (RIGHT)."""

    @classmethod
    def reference(cls, node, x, y):
        bits = x.dtype.itemsize * 8
        in_range = (y >= 0) & (y < bits)
        amount = np.where(in_range, y, 0).astype(x.dtype)
        if node.attr("direction") == "LEFT":
            return [np.where(in_range, np.left_shift(x, amount), 0).astype(x.dtype)]
        fill = np.where(x < 0, -1, 0) if x.dtype.kind == "i" else 0
        return [np.where(in_range, np.right_shift(x, amount), fill).astype(x.dtype)]


@elementwise("CastLike", since=15)
class CastLike(Elementwise):
    """Cast to the element type of the second input (whose values are not read)."""

    @classmethod
    def infer(cls, node, inputs, values):
        return [TensorType(inputs[1].dtype, inputs[0].shape)]

    @classmethod
    def reference(cls, node, x, like):
        if x.dtype == object:
            return [x.copy()]
        return [onnx_cast(x, onnx_dtype(like.dtype), bool(node.attr("saturate", 1)), node.attr("round_mode", "up"))]


_SYMBOLIC = {"Max": np.frompyfunc(lambda a, b: sympy.Max(a, b), 2, 1),
             "Min": np.frompyfunc(lambda a, b: sympy.Min(a, b), 2, 1)}


def _variadic(op_type, func):
    @elementwise(op_type)
    class Variadic(Elementwise):
        @classmethod
        def reference(cls, node, *xs):
            # Shape arithmetic (min(count, 3) for a TopK's k): symbolic dims through sympy's Min/Max.
            symbolic = any(np.asarray(x).dtype == object for x in xs) and op_type in _SYMBOLIC
            result = xs[0]
            for x in xs[1:]:
                result = _SYMBOLIC[op_type](result, x) if symbolic else func(result, x)
            return [np.asarray(result).astype(xs[0].dtype) if xs[0].dtype != object else np.asarray(result)]

    Variadic.__name__ = Variadic.__qualname__ = op_type
    return Variadic


Max = _variadic("Max", np.maximum)
Min = _variadic("Min", np.minimum)
Sum = _variadic("Sum", np.add)


@elementwise("Mean")
class Mean(Elementwise):
    @classmethod
    def reference(cls, node, *xs):
        return [(sum(x.astype(np.float64) for x in xs) / len(xs)).astype(xs[0].dtype)]


@elementwise("Pow")
class Pow(Elementwise):
    optional_value_inputs = (1, )
    @classmethod
    def same_dtype_inputs(cls):
        return ()

    @classmethod
    def reference(cls, node, a, b):
        return [np.power(a.astype(np.float64), b.astype(np.float64)).astype(a.dtype)]


@elementwise("Where", since=9)
class Where(Elementwise):
    dtype_source = 1

    @classmethod
    def same_dtype_inputs(cls):
        return (1, 2)

    @classmethod
    def reference(cls, node, condition, x, y):
        return [np.where(condition, x, y)]


def target_dtype(node) -> np.dtype:
    """The element type a Cast or BitCast node's ``to`` attribute names."""
    try:
        return numpy_dtype(node.attr("to"))
    except ValueError as error:
        raise ShapeInferenceError(f"{node.op_type}: {error}") from None


@elementwise("Cast")
class Cast(Elementwise):
    @classmethod
    def infer(cls, node, inputs, values):
        return [TensorType(target_dtype(node), inputs[0].shape)]

    @classmethod
    def reference(cls, node, x):
        if x.dtype == object:
            return [x.copy()]
        return [onnx_cast(x, node.attr("to"), bool(node.attr("saturate", 1)), node.attr("round_mode", "up"))]


def onnx_cast(x: np.ndarray, to: int, saturate: bool, round_mode: str) -> np.ndarray:
    """ONNX's Cast as its reference implementation states it (float8 saturation, float8e8m0 rounding)."""
    from onnx.reference.ops.op_cast import cast_to
    with np.errstate(invalid="ignore", over="ignore"):
        return np.asarray(cast_to(x, to, saturate, round_mode or "up"))


@elementwise("Clip")
class Clip(Elementwise):
    @classmethod
    def reference(cls, node, x, low=None, high=None):
        result = x
        if low is not None:
            result = np.maximum(result, low)
        if high is not None:
            result = np.minimum(result, high)
        return [result.astype(x.dtype)]


def _bit_width(dtype: np.dtype) -> int:
    name = np.dtype(dtype).name
    if name in ("int4", "uint4", "float4_e2m1fn"):
        return 4
    if name in ("int2", "uint2"):
        return 2
    return 8 * np.dtype(dtype).itemsize


@op("BitCast", since=26)
class BitCast(Op):
    """The same bits read as another element type of the same width."""

    @classmethod
    def infer(cls, node, inputs, values):
        dtype = target_dtype(node)
        if _bit_width(dtype) != _bit_width(inputs[0].dtype):
            raise ShapeInferenceError(f"BitCast: {inputs[0].dtype} ({_bit_width(inputs[0].dtype)} bits) and {dtype} "
                                      f"({_bit_width(dtype)} bits) differ in width")
        return [TensorType(dtype, inputs[0].shape)]

    @classmethod
    def reference(cls, node, x):
        return [np.ascontiguousarray(x).view(numpy_dtype(node.attr("to")))]
