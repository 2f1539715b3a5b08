"""QuantizeLinear / DequantizeLinear as one parallel element-wise map (the scale found per tensor, per axis or per
block), DynamicQuantizeLinear as one tasklet (a min/max pass, then the quantizing pass)."""
from __future__ import annotations

from sdflow.ir.ops.quantization import INTEGER_LIMITS, scale_index_axes
from ._expansion import Ctx, add_map, cexpr, expansion, index_ranges, product


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
    zero = "0"
    if zero_conn is not None:
        inputs["z"] = f"{zero_conn}[{subset}]"
        zero = "(int64_t)z"
    out_type = ctx.desc(y_conn).dtype
    if ctx.node.op_type == "QuantizeLinear":
        low, high = INTEGER_LIMITS[out_type.as_numpy_dtype()]
        # The quotient rounded to the input type first, as the reference divides in it.
        code = (f"const double v_ = std::nearbyint((double)(decltype(x))((double)x / (double)s)) + {zero}; "
                f"y = ({out_type.ctype})std::min<double>({high}, std::max<double>({low}, v_));")
    else:
        code = f"y = ({out_type.ctype})(((int64_t)x - {zero}) * (double)s);"
    sdfg, state = ctx.nested()
    add_map(state, ctx.node.op_type.lower(), index_ranges(shape), inputs, code,
            {"y": f"{y_conn}[{', '.join(f'i{k}' for k in range(len(shape))) or '0'}]"})
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
