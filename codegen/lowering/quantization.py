"""QuantizeLinear / DequantizeLinear as one parallel element-wise map (the scale found per tensor, per axis or per
block), DynamicQuantizeLinear as one tasklet (a min/max pass, then the quantizing pass); MatMulInteger and
ConvInteger as plain int32 loops (correct, not tuned: issue 18's VNNI kernels replace them)."""
from __future__ import annotations

import numpy as np

from sdflow.ir.ops.linalg import matmul_shapes
from sdflow.ir.ops.nn import Conv
from sdflow.ir.ops.quantization import INTEGER_LIMITS, scale_index_axes
from sdflow.ir.types import is_storage_only
from ._expansion import Ctx, add_map, cexpr, expansion, index_ranges, product
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


@expansion("DynamicQuantizeLinear")
def dynamic_quantize(ctx: Ctx):
    x, y, scale, zero = (ctx.ptr(c) for c in (ctx.connector("in", 0), ctx.connector("out", 0),
                                              ctx.connector("out", 1), ctx.connector("out", 2)))
    n = cexpr(product(ctx.shape(ctx.connector("in", 0))))
    return ctx.tasklet(f"""
float low_ = 0, high_ = 0;
for (int64_t k_ = 0; k_ < {n}; ++k_) {{ low_ = std::min(low_, {x}[k_]); high_ = std::max(high_, {x}[k_]); }}
const float scale_ = (high_ - low_) / 255.0f;
const float zero_ = scale_ == 0 ? 0.0f : std::min(255.0f, std::max(0.0f, std::nearbyint(-low_ / scale_)));
for (int64_t k_ = 0; k_ < {n}; ++k_)
    {y}[k_] = scale_ == 0 ? 0 : (uint8_t)std::min(255.0f, std::max(0.0f, std::nearbyint({x}[k_] / scale_) + zero_));
{scale}[0] = scale_;
{zero}[0] = (uint8_t)zero_;
""")


def _zero_point_code(ctx: Ctx, position: int, index: str) -> str:
    """C++ for an int32 zero point: 0 when absent, the scalar, or element ``index`` of a per-row/column one."""
    connector = ctx.connector("in", position)
    if connector is None:
        return "0"
    per_element = product(ctx.shape(connector)) != 1
    return f"(int32_t){ctx.ptr(connector)}[{index if per_element else '0'}]"


@expansion("MatMulInteger")
def matmul_integer(ctx: Ctx):
    a_shape, b_shape = ctx.shape(ctx.connector("in", 0)), ctx.shape(ctx.connector("in", 1))
    _, m, k, n, _ = matmul_shapes(a_shape, b_shape)
    a, b, y = (ctx.ptr(ctx.connector(kind, p)) for kind, p in (("in", 0), ("in", 1), ("out", 0)))
    rows = cexpr(product(a_shape[:-1]) if len(a_shape) > 1 else 1)
    k_c, n_c = cexpr(k), cexpr(n)
    # A batched B pairs with A's batch (the op's inference allows only that): row r_ is in batch r_ / m.
    b_batch = f"(r_ / {cexpr(m)}) * {k_c} * {n_c}" if len(b_shape) > 2 else "0"
    # Rows in parallel; over k, one row of B scaled into the output row (vectorised over its n columns).
    return ctx.tasklet(f"""
#pragma omp parallel for schedule(static)
for (int64_t r_ = 0; r_ < {rows}; ++r_) {{
  int32_t* __restrict out_ = {y} + r_ * {n_c};
  for (int64_t j_ = 0; j_ < {n_c}; ++j_) out_[j_] = 0;
  const int32_t a_zero_ = {_zero_point_code(ctx, 2, f"r_ % {cexpr(m)}")};
  for (int64_t k_ = 0; k_ < {k_c}; ++k_) {{
    const int32_t a_ = (int32_t){a}[r_ * {k_c} + k_] - a_zero_;
    const auto* __restrict b_row_ = {b} + {b_batch} + k_ * {n_c};
    for (int64_t j_ = 0; j_ < {n_c}; ++j_) out_[j_] += a_ * ((int32_t)b_row_[j_] - {_zero_point_code(ctx, 3, "j_")});
  }}
}}
""")


@expansion("ConvInteger")
def conv_integer(ctx: Ctx):
    x_shape, w_shape = ctx.shape(ctx.connector("in", 0)), ctx.shape(ctx.connector("in", 1))
    geo = Conv.geometry(ctx.node, x_shape, w_shape)
    two_d = len(x_shape) == 4  # a 1-D convolution runs as 2-D with one row
    pick = (lambda values, one: [one] + list(values)) if not two_d else (lambda values, one: list(values))
    (kh, kw), (sh, sw), (dh, dw) = pick(geo.kernel, 1), pick(geo.strides, 1), pick(geo.dilations, 1)
    (ph, pw), (oh, ow) = pick(geo.pads_begin, 0), pick(geo.out, 1)
    h, w = pick(x_shape[2:], 1)
    group = ctx.node.attr("group", 1)
    x, wt, y = (ctx.ptr(ctx.connector(kind, p)) for kind, p in (("in", 0), ("in", 1), ("out", 0)))
    c = ", ".join(f"{name} = {cexpr(value)}" for name, value in (
        ("N_", x_shape[0]), ("C_", x_shape[1]), ("H_", h), ("W_", w), ("M_", w_shape[0]), ("CG_", w_shape[1]),
        ("KH_", kh), ("KW_", kw), ("SH_", sh), ("SW_", sw), ("DH_", dh), ("DW_", dw), ("PH_", ph), ("PW_", pw),
        ("OH_", oh), ("OW_", ow)))
    return ctx.tasklet(f"""
const int64_t {c};
const int64_t MG_ = M_ / {group};
const int32_t x_zero_ = {_zero_point_code(ctx, 2, "0")};
#pragma omp parallel for collapse(2) schedule(static)
for (int64_t n_ = 0; n_ < N_; ++n_)
 for (int64_t m_ = 0; m_ < M_; ++m_) {{
  const int32_t w_zero_ = {_zero_point_code(ctx, 3, "m_")};
  const int64_t c0_ = (m_ / MG_) * CG_;
  for (int64_t oh_ = 0; oh_ < OH_; ++oh_)
   for (int64_t ow_ = 0; ow_ < OW_; ++ow_) {{
    int32_t acc_ = 0;
    for (int64_t c_ = 0; c_ < CG_; ++c_)
     for (int64_t kh_ = 0; kh_ < KH_; ++kh_) {{
      const int64_t ih_ = oh_ * SH_ - PH_ + kh_ * DH_;
      if (ih_ < 0 || ih_ >= H_) continue;
      for (int64_t kw_ = 0; kw_ < KW_; ++kw_) {{
        const int64_t iw_ = ow_ * SW_ - PW_ + kw_ * DW_;
        if (iw_ < 0 || iw_ >= W_) continue;
        acc_ += ((int32_t){x}[((n_ * C_ + c0_ + c_) * H_ + ih_) * W_ + iw_] - x_zero_)
              * ((int32_t){wt}[((m_ * CG_ + c_) * KH_ + kh_) * KW_ + kw_] - w_zero_);
      }}
     }}
    {y}[((n_ * M_ + m_) * OH_ + oh_) * OW_ + ow_] = acc_;
   }}
 }}
""")
