"""Element-wise ops (and Expand, BatchNormalization) as one parallel map with a C++ tasklet per element."""
from __future__ import annotations

import re

from sdflow.ir.ops.movement import is_data_dependent
from sdflow.ir.types import is_storage_only, to_dim

from ._math import vectorizable
from ._expansion import Ctx, add_map, expansion, index_ranges
from .lowp import INCLUDE as LOWP_INCLUDE, convert_expression, element_type

_BINARY = {"Add": "in0 + in1", "Sub": "in0 - in1", "Mul": "in0 * in1", "Div": "in0 / in1", "Equal": "in0 == in1",
           "Less": "in0 < in1", "LessOrEqual": "in0 <= in1", "Greater": "in0 > in1", "GreaterOrEqual": "in0 >= in1",
           "And": "in0 && in1", "Or": "in0 || in1", "Xor": "in0 != in1"}
# A NaN on either side is the result, as in ONNX Runtime (std::max/std::min keep the first argument instead).
_VARIADIC = {"Max": "(({a}) > ({b}) || ({a}) != ({a}) ? ({a}) : ({b}))",
             "Min": "(({a}) < ({b}) || ({a}) != ({a}) ? ({a}) : ({b}))", "Sum": "({a} + {b})"}
_UNARY = {
    "Sqrt": "std::sqrt(in0)",
    "Reciprocal": "({T})1 / in0",
    "Exp": "std::exp(in0)",
    "Log": "std::log(in0)",
    # Through exp, which the compiler vectorises; std::tanh is a scalar libm call (~4x slower on GPT-2's GELU).
    "Tanh": "(({T})1 - ({T})2 / (std::exp(({T})2 * in0) + ({T})1))",
    "Erf": "std::erf(in0)",
    "Relu": "(in0 < ({T})0 ? ({T})0 : in0)",  # NaN stays NaN
    "Sigmoid": "({T})1 / (({T})1 + std::exp(-in0))",
    "Identity": "in0",
    "Cast": "({T})in0",
    "Expand": "in0",
    "Neg": "-in0",
    "Abs": "(in0 < ({T})0 ? -in0 : in0)",
    "Floor": "std::floor(in0)",
    "Ceil": "std::ceil(in0)",
    "Not": "!in0",
    "IsNaN": "std::isnan(in0)",
    "Sin": "std::sin(in0)", "Cos": "std::cos(in0)", "Tan": "std::tan(in0)", "Asin": "std::asin(in0)",
    "Acos": "std::acos(in0)", "Atan": "std::atan(in0)", "Sinh": "std::sinh(in0)", "Cosh": "std::cosh(in0)",
    "Asinh": "std::asinh(in0)", "Acosh": "std::acosh(in0)", "Atanh": "std::atanh(in0)",
    "Sign": "(in0 != in0 ? in0 : ({T})((in0 > ({T})0) - (in0 < ({T})0)))",
    "Round": "std::nearbyint(in0)",  # the default rounding mode: halves to even
    "Softplus": "std::log(std::exp(in0) + ({T})1)",
    "Softsign": "in0 / (({T})1 + (in0 < ({T})0 ? -in0 : in0))",
    "HardSwish": "in0 * std::min<{T}>(({T})1, std::max<{T}>(({T})0, in0 / ({T})6 + ({T})0.5))",
    "Mish": "in0 * std::tanh(std::log1p(std::exp(in0)))",
    "BitwiseNot": "({T})(~in0)",
    "CastLike": "({T})in0",
}
_BINARY.update({"BitwiseAnd": "in0 & in1", "BitwiseOr": "in0 | in1", "BitwiseXor": "in0 ^ in1",
                "PRelu": "(in0 < ({T})0 ? in0 * in1 : in0)"})


_HALF_TYPES = ("dace::float16", "dace::bfloat16")

# Pow with a known small exponent (x*x instead of a libm call; GPT-2's GELU cubes its input).
_SMALL_POWERS = {1.0: "in0", 2.0: "in0 * in0", 3.0: "in0 * in0 * in0", 0.5: "std::sqrt(in0)"}
_GELU = {
    "none": "({T})0.5 * in0 * (({T})1 + std::erf(in0 * ({T})0.70710678118654752))",
    "tanh": "({T})0.5 * in0 * (({T})1 + std::tanh(({T})0.79788456080286536 * (in0 + ({T})0.044715 * in0 * in0 * in0)))",
}


def _attribute_expression(node) -> str | None:
    """Element-wise ops whose C++ depends on attributes."""
    attr = node.attr
    op_type = node.op_type
    if op_type == "LeakyRelu":
        return f"(in0 >= ({{T}})0 ? in0 : ({{T}}){attr('alpha', 0.01)!r} * in0)"
    if op_type == "Elu":
        return f"(in0 < ({{T}})0 ? ({{T}}){attr('alpha', 1.0)!r} * (std::exp(in0) - ({{T}})1) : in0)"
    if op_type == "Selu":
        alpha, gamma = attr("alpha", 1.6732632423543772), attr("gamma", 1.0507009873554805)
        return f"({{T}}){gamma!r} * (in0 > ({{T}})0 ? in0 : ({{T}}){alpha!r} * (std::exp(in0) - ({{T}})1))"
    if op_type == "Celu":
        alpha = attr("alpha", 1.0)
        return f"(in0 > ({{T}})0 ? in0 : ({{T}}){alpha!r} * (std::exp(in0 / ({{T}}){alpha!r}) - ({{T}})1))"
    if op_type == "HardSigmoid":
        linear = f"(({{T}}){attr('alpha', 0.2)!r} * in0 + ({{T}}){attr('beta', 0.5)!r})"
        return f"({linear} < ({{T}})0 ? ({{T}})0 : ({linear} > ({{T}})1 ? ({{T}})1 : {linear}))"  # NaN stays NaN
    if op_type == "Swish":
        return f"in0 / (({{T}})1 + std::exp(-({{T}}){attr('alpha', 1.0)!r} * in0))"
    if op_type == "SwiGLU":
        return f"in0 / (({{T}})1 + std::exp(-({{T}}){attr('alpha', 1.0)!r} * in0)) * in1"
    if op_type == "ThresholdedRelu":
        return f"(in0 > ({{T}}){attr('alpha', 1.0)!r} ? in0 : ({{T}})0)"
    if op_type == "Shrink":
        lambd, bias = attr("lambd", 0.5), attr("bias", 0.0)
        return (f"(in0 < ({{T}})-{lambd!r} ? in0 + ({{T}}){bias!r} : (in0 > ({{T}}){lambd!r} ? "
                f"in0 - ({{T}}){bias!r} : ({{T}})0))")
    if op_type == "IsInf":
        pos = "(std::isinf(in0) && in0 > 0)" if attr("detect_positive", 1) else "false"
        neg = "(std::isinf(in0) && in0 < 0)" if attr("detect_negative", 1) else "false"
        return f"({pos} || {neg})"
    if op_type == "BitShift":
        in_range = "(in1 >= 0 && in1 < (decltype(in1))(8 * sizeof({T})))"
        if attr("direction") == "LEFT":
            return f"({in_range} ? ({{T}})(in0 << in1) : ({{T}})0)"
        return f"({in_range} ? ({{T}})(in0 >> in1) : (in0 < ({{T}})0 ? ({{T}})-1 : ({{T}})0))"
    if op_type == "Gelu":
        return _GELU[attr("approximate", "none")]
    return None


def _mod_expression(node, kind: str) -> str:
    if kind == "f":
        if node.attr("fmod", 0):
            return "std::fmod(in0, in1)"
        # The sign of the divisor, as numpy's and Python's float %.
        return ("([&] { {T} r_ = std::fmod(in0, in1); return (r_ != ({T})0 && ((r_ < ({T})0) != (in1 < ({T})0)))"
                " ? ({T})(r_ + in1) : r_; }())")
    # Integer division by zero is undefined in ONNX; 0 (as numpy gives) rather than a crash.
    if node.attr("fmod", 0) or kind in "ub":
        return "(in1 == 0 ? ({T})0 : ({T})(in0 % in1))"
    # fmod=0: the sign of the divisor (Python's %); C's % takes the dividend's.
    return "(in1 == 0 ? ({T})0 : ({T})(((in0 % in1) + in1) % in1))"


def expression(node, present: list[int], input_kind: str) -> str:
    """C++ for one element of ``node``'s output: inputs named ``in<position>`` (variadic ops: ``in<k>`` for the
    k-th present input), ``{T}`` the output's C++ type; ``input_kind`` is the numpy kind of input 0."""
    op_type = node.op_type
    if op_type in _BINARY:
        return _BINARY[op_type]
    if op_type in _UNARY:
        return _UNARY[op_type]
    if op_type in _VARIADIC:
        value = "in0"
        for k in range(1, len(present)):
            value = _VARIADIC[op_type].format(T="{T}", a=value, b=f"in{k}")
        return value
    if op_type == "Pow":
        exponent = node.static_input(1)
        if exponent is not None and exponent.size == 1 and float(exponent.ravel()[0]) in _SMALL_POWERS:
            return _SMALL_POWERS[float(exponent.ravel()[0])]
        return "({T})std::pow(in0, in1)"
    with_attributes = _attribute_expression(node)
    if with_attributes is not None:
        return with_attributes
    if op_type == "Mod":
        return _mod_expression(node, input_kind)
    if op_type == "Mean":
        return "(" + " + ".join(f"in{k}" for k in range(len(present))) + f") / ({{T}}){len(present)}"
    if op_type == "Where":
        return "(in0 ? in1 : in2)"
    if op_type == "Clip":
        value = "in0"
        if 1 in present:
            value = f"({value} < in1 ? in1 : {value})"
        if 2 in present:
            value = f"({value} > in2 ? in2 : {value})"
        return value
    raise NotImplementedError(op_type)


def broadcast_index(in_shape, out_shape) -> str:
    """Memlet subset of an input broadcast (numpy rules) against the output's map indices. A size known only at run
    time that may be 1 there (ir.ops.movement.is_data_dependent) is indexed min(i, size - 1)."""
    offset = len(out_shape) - len(in_shape)
    parts = []
    for k, d in enumerate(in_shape):
        out_dim, index = out_shape[offset + k], f"i{offset + k}"
        if d == 1 and out_dim != 1:
            parts.append("0")
        elif d != out_dim and is_data_dependent(to_dim(d)):
            parts.append(f"min({index}, {to_dim(d)} - 1)")
        else:
            parts.append(index)
    return ", ".join(parts) if parts else "0"


def _elementwise_map(ctx: Ctx, in_indices: dict[str, str], code: str, includes: str = ""):
    out_connector = ctx.connector("out", 0)
    out_shape = ctx.shape(out_connector)
    sdfg, state = ctx.nested()
    inputs = {f"in{p}": f"{c}[{index}]" for p, (c, index) in enumerate(in_indices.items())}
    out_index = ", ".join(f"i{k}" for k in range(len(out_shape))) or "0"
    add_map(state, ctx.node.op_type.lower(), index_ranges(out_shape), inputs, code, {"out": f"{out_connector}[{out_index}]"},
            includes=includes)
    return sdfg


def _cast(ctx: Ctx, indices: dict[str, str]):
    """Cast/CastLike to or from a storage-only type (float8, float4, int4, int2): lowp.h's conversions."""
    source = element_type(ctx.desc(ctx.connector("in", 0)))
    out = ctx.desc(ctx.connector("out", 0))
    code = convert_expression("in0", source, element_type(out), out.dtype.ctype,
                              saturate=bool(ctx.node.attr("saturate", 1)), round_mode=ctx.node.attr("round_mode", "up"))
    return _elementwise_map(ctx, indices, f"out = {code};", includes=LOWP_INCLUDE)


@expansion("Add", "Sub", "Mul", "Div", "Pow", "Equal", "Where", "Clip", "Sqrt", "Reciprocal", "Exp", "Log", "Tanh",
           "Erf", "Relu", "LeakyRelu", "Sigmoid", "Gelu", "Identity", "Cast", "Expand", "Neg", "Abs", "Floor", "Ceil",
           "Not", "IsNaN", "Less", "LessOrEqual", "Greater", "GreaterOrEqual", "And", "Or", "Xor", "Max", "Min", "Sum",
           "Sin", "Cos", "Tan", "Asin", "Acos", "Atan", "Sinh", "Cosh", "Asinh", "Acosh", "Atanh", "Sign", "Round",
           "Softplus", "Softsign", "Elu", "Selu", "Celu", "HardSigmoid", "HardSwish", "ThresholdedRelu", "Mish",
           "Shrink", "Swish", "SwiGLU", "BitwiseNot", "IsInf", "BitwiseAnd", "BitwiseOr", "BitwiseXor", "PRelu", "Mod",
           "BitShift", "CastLike", "Mean")
def elementwise(ctx: Ctx):
    out_connector = ctx.connector("out", 0)
    out_shape = ctx.shape(out_connector)
    positions = [p for p in range(len(ctx.node.onnx_inputs)) if ctx.connector("in", p)]
    if ctx.node.op_type in ("Expand", "CastLike"):
        positions = [0]  # Expand's shape and CastLike's type-giver are not read per element
    # Renumber so that the code names present inputs in0, in1, ... by ONNX position.
    indices = {ctx.connector("in", p): broadcast_index(ctx.shape(ctx.connector("in", p)), out_shape)
               for p in positions}
    if ctx.node.op_type in ("Cast", "CastLike") and any(
            is_storage_only(element_type(ctx.desc(ctx.connector(kind, 0)))) for kind in ("in", "out")):
        return _cast(ctx, indices)
    code = expression(ctx.node, positions, ctx.desc(ctx.connector("in", 0)).dtype.as_numpy_dtype().kind)
    for new, old in sorted(((f"in{k}", f"in{p}") for k, p in enumerate(positions)), key=lambda t: t[1]):
        if new != old:
            code = code.replace(old, new)
    out_type = ctx.desc(out_connector).dtype.ctype
    if out_type in _HALF_TYPES and ctx.node.op_type not in ("Cast", "CastLike"):
        # float16/bfloat16 math in float, rounded once per op (as numpy computes float16 ufuncs); DaCe's structs
        # have no overloads for most functions and mix badly with float in ?: expressions.
        for k, p in enumerate(positions):
            if ctx.desc(ctx.connector("in", p)).dtype.ctype in _HALF_TYPES:
                code = re.sub(rf"\bin{k}\b", f"((float)in{k})", code)
        out_type = "float"
    return _elementwise_map(ctx, indices, vectorizable(f"out = {code.replace('{T}', out_type)};", out_type))


@expansion("BatchNormalization")
def batch_normalization(ctx: Ctx):
    rank = len(ctx.shape(ctx.connector("in", 0)))
    channel = "i1" if rank > 1 else "0"
    indices = {ctx.connector("in", 0): ", ".join(f"i{k}" for k in range(rank))}
    for p in range(1, 5):
        indices[ctx.connector("in", p)] = channel
    eps = float(ctx.node.attr("epsilon", 1e-5))
    code = f"out = (in0 - in3) * (in1 / std::sqrt(in4 + ({{T}}){eps!r})) + in2;"
    return _elementwise_map(ctx, indices, code.replace("{T}", ctx.desc(ctx.connector("in", 0)).dtype.ctype))
