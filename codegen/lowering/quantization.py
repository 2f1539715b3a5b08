"""QuantizeLinear / DequantizeLinear as one parallel element-wise map (the scale found per tensor, per axis or per
block), DynamicQuantizeLinear, MatMulInteger and ConvInteger as calls of codegen/kernels/quant.h."""
from __future__ import annotations

import numpy as np

from sdflow.ir.ops.linalg import matmul_shapes
from sdflow.ir.ops.nn import Conv
from sdflow.ir.ops.quantization import INTEGER_LIMITS, scale_index_axes
from sdflow.ir.types import is_storage_only
from ._expansion import Ctx, add_map, cexpr, expansion, index_ranges, int_args, product
from .lowp import INCLUDE as LOWP_INCLUDE, convert_expression, element_type


def _scale_subset(ctx: Ctx, x_shape, scale_connector) -> str:
    scale_shape = ctx.shape(scale_connector)
    kind, axis, block = scale_index_axes(ctx.node, len(x_shape), scale_shape)
    if kind == "tensor":
        return ", ".join("0" for _ in scale_shape) or "0"
    if kind == "axis":
        return f"i{axis}"
    return ", ".join(f"i{k} // {block}" if k == axis else f"i{k}" for k in range(len(x_shape)))


@expansion("QuantizeLinear", "DequantizeLinear")
def quantize(ctx: Ctx):
    x_conn, scale_conn, zero_conn, y_conn = (ctx.connector("in", 0), ctx.connector("in", 1), ctx.connector("in", 2),
                                             ctx.connector("out", 0))
    shape = ctx.shape(x_conn)
    subset = _scale_subset(ctx, shape, scale_conn)
    inputs = {"x": f"{x_conn}[{', '.join(f'i{k}' for k in range(len(shape))) or '0'}]",
              "s": f"{scale_conn}[{subset}]"}
    # Quantized values of a storage-only type (int4, float8, ...) are decoded and encoded by lowp.h.
    quantized = element_type(ctx.desc(y_conn if ctx.node.op_type == "QuantizeLinear" else x_conn))
    narrow = is_storage_only(quantized)
    zero = "0"
    if zero_conn is not None:
        inputs["z"] = f"{zero_conn}[{subset}]"
        zero = f"(int64_t){convert_expression('z', quantized, np.dtype(np.float32), 'float')}" if narrow else "(int64_t)z"
    out_type = ctx.desc(y_conn).dtype
    if ctx.node.op_type == "QuantizeLinear":
        # The quotient rounded to the input type first, as the reference divides in it.
        quotient = "(decltype(x))((double)x / (double)s)"
        if quantized in INTEGER_LIMITS:
            low, high = INTEGER_LIMITS[quantized]
            value = f"std::min<double>({high}, std::max<double>({low}, std::nearbyint((double){quotient}) + {zero}))"
            code = f"y = {convert_expression(f'(int64_t){value}', np.dtype(np.int64), quantized, out_type.ctype)};"
        elif quantized.name.startswith("float8"):  # the zero point is 0 for float8; saturate applies
            code = f"y = {convert_expression(quotient, np.dtype(np.float32), quantized, out_type.ctype, bool(ctx.node.attr('saturate', 1)))};"
        else:  # float4: x / scale + zero point, cast
            code = f"y = {convert_expression(f'((float){quotient} + (float){zero})', np.dtype(np.float32), quantized, out_type.ctype)};"
    elif narrow:
        zero = convert_expression("z", quantized, np.dtype(np.float32), "float") if zero_conn is not None else "0.0f"
        code = f"y = ({out_type.ctype})(((double){convert_expression('x', quantized, np.dtype(np.float32), 'float')} - (double){zero}) * (double)s);"
    else:
        code = f"y = ({out_type.ctype})(((int64_t)x - {zero}) * (double)s);"
    sdfg, state = ctx.nested()
    add_map(state, ctx.node.op_type.lower(), index_ranges(shape), inputs, code,
            {"y": f"{y_conn}[{', '.join(f'i{k}' for k in range(len(shape))) or '0'}]"},
            includes=LOWP_INCLUDE if narrow else "")
    return sdfg


QUANT_INCLUDE = '#include "quant.h"\n'


@expansion("DynamicQuantizeLinear")
def dynamic_quantize(ctx: Ctx):
    """One call of ``sdflow_kernels::dynamic_quantize_linear`` (codegen/kernels/quant.h)."""
    x, y, scale, zero = (ctx.ptr(c) for c in (ctx.connector("in", 0), ctx.connector("out", 0),
                                              ctx.connector("out", 1), ctx.connector("out", 2)))
    n = cexpr(product(ctx.shape(ctx.connector("in", 0))))
    return ctx.tasklet(f"sdflow_kernels::dynamic_quantize_linear({x}, (int64_t)({n}), {y}, {scale}, {zero});\n",
                       includes=QUANT_INCLUDE)


def _zero_point(ctx: Ctx, position: int) -> tuple[str, str]:
    """(pointer, per-element flag) of a zero point input: a typed null pointer when absent."""
    connector = ctx.connector("in", position)
    per_element = connector is not None and product(ctx.shape(connector)) != 1
    return ctx.ptr_or_null(connector, "const uint8_t"), "true" if per_element else "false"


@expansion("MatMulInteger")
def matmul_integer(ctx: Ctx):
    """One call of ``sdflow_kernels::matmul_integer`` (codegen/kernels/quant.h)."""
    a_shape, b_shape = ctx.shape(ctx.connector("in", 0)), ctx.shape(ctx.connector("in", 1))
    _, m, k, n, _ = matmul_shapes(a_shape, b_shape)
    a, b, y = (ctx.ptr(ctx.connector(kind, p)) for kind, p in (("in", 0), ("in", 1), ("out", 0)))
    rows = product(a_shape[:-1]) if len(a_shape) > 1 else 1
    (a_zero, a_per), (b_zero, b_per) = _zero_point(ctx, 2), _zero_point(ctx, 3)
    # A batched B pairs with A's batch (the op's inference allows only that).
    sizes = int_args((rows, m, k, n))
    return ctx.tasklet(f"sdflow_kernels::matmul_integer({a}, {b}, {a_zero}, {a_per}, {b_zero}, {b_per}, {y}, {sizes}, "
                       f"{'true' if len(b_shape) > 2 else 'false'});\n", includes=QUANT_INCLUDE)


@expansion("ConvInteger")
def conv_integer(ctx: Ctx):
    """One call of ``sdflow_kernels::conv_integer`` (codegen/kernels/quant.h); a 1-D convolution runs as 2-D with
    one row."""
    x_shape, w_shape = ctx.shape(ctx.connector("in", 0)), ctx.shape(ctx.connector("in", 1))
    geo = Conv.geometry(ctx.node, x_shape, w_shape)
    two_d = len(x_shape) == 4
    pick = (lambda values, one: [one] + list(values)) if not two_d else (lambda values, one: list(values))
    (kh, kw), (sh, sw), (dh, dw) = pick(geo.kernel, 1), pick(geo.strides, 1), pick(geo.dilations, 1)
    (ph, pw), (oh, ow) = pick(geo.pads_begin, 0), pick(geo.out, 1)
    h, w = pick(x_shape[2:], 1)
    x, wt, y = (ctx.ptr(ctx.connector(kind, p)) for kind, p in (("in", 0), ("in", 1), ("out", 0)))
    fields = [x_shape[0], x_shape[1], h, w, w_shape[0], ctx.node.attr("group", 1), kh, kw, sh, sw, dh, dw, ph, pw, 0,
              0, oh, ow]
    geometry = int_args(fields)
    (x_zero, _), (w_zero, w_per) = _zero_point(ctx, 2), _zero_point(ctx, 3)
    return ctx.tasklet(f"const sdflow_kernels::ConvGeometry g_{{{geometry}}};\n"
                       f"sdflow_kernels::conv_integer({x}, {wt}, {x_zero}, {w_zero}, {w_per}, {y}, g_);\n",
                       includes=QUANT_INCLUDE)


QGEMM_INCLUDE = '#include "qgemm.h"\n'
NBITS_INCLUDE = '#include "nbits.h"\n'
NBITS_PACKED = "packed_nbits"  # the connector of a fused 4-bit product's packed weight (packing.prepack_nbits)
QGEMM_PACKED = "packed_qgemm"  # the connector of a node's packed constant int8 B (added by packing.prepack_qgemm)


def qgemm_call(rows, n, k, a, b, ldb, packed, scale, per_column: bool, bias, y, ldy, per_row: bool,
               a_scale=None, a_zero=None) -> str:
    """One call of ``sdflow_kernels::qgemm::dynamic_quantize_matmul`` (codegen/kernels/qgemm.h): B from its packed
    copy ``packed`` when given, else packed per call from ``b`` (rows ``ldb`` apart); A's static scale and zero
    point when given."""
    weights = packed if packed else f"sdflow_kernels::qgemm::pack_per_call({b}, {ldb}, {k}, {n})"
    flag = {True: "true", False: "false"}
    static = f", {a_scale}, {a_zero}" if a_scale else ""
    return (f"sdflow_kernels::qgemm::dynamic_quantize_matmul({rows}, {n}, {k}, {a}, {k}, {weights}, {scale}, "
            f"{flag[per_column]}, {bias or 'nullptr'}, {y}, {ldy}, {flag[per_row]}{static});")


@expansion("QuantizedMatMul")
def dynamic_quantize_matmul(ctx: Ctx):
    """One call of ``qgemm.h`` over every row of A (its leading axes flattened)."""
    a_in, b_in, s_in, bias_in, a_scale, a_zero = (ctx.connector("in", p) for p in range(6))
    a_shape = ctx.shape(a_in)
    k, n = (cexpr(d) for d in ctx.shape(b_in))
    rows = cexpr(product(a_shape[:-1]) if len(a_shape) > 1 else 1)
    packed = ctx.ptr(QGEMM_PACKED) if QGEMM_PACKED in ctx.inputs else None
    per_column = ctx.shape(s_in) != [1]
    code = qgemm_call(rows, n, k, ctx.ptr(a_in), ctx.ptr(b_in), n, packed, ctx.ptr(s_in), per_column,
                      ctx.ptr(bias_in) if bias_in else None, ctx.ptr(ctx.connector("out", 0)), n,
                      bool(ctx.node.attr("per_row", 0)), ctx.ptr(a_scale) if a_scale else None,
                      ctx.ptr(a_zero) if a_zero else None)
    return ctx.tasklet(code, includes=QGEMM_INCLUDE, unread=(b_in,) if packed else ())
