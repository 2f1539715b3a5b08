"""Conv (im2col + BLAS GEMM; direct loops for depthwise), MaxPool and AveragePool (parallel over planes)."""
from __future__ import annotations

from dace.libraries.blas.environments.openblas import OpenBLAS

from sdflow.ir.errors import CompileError
from sdflow.ir.ops.nn import window_geometry
from ._expansion import Ctx, add_map, cexpr, expansion, index_ranges


def _geometry_constants(ctx: Ctx, x_shape, kernel, ceil_mode=False) -> str:
    """C++ constants N C H W KH KW SH SW DH DW PT PL PB PR OH OW (1-D inputs as H = 1)."""
    geo = window_geometry(ctx.node, list(x_shape[2:]), kernel, ceil_mode)
    if len(kernel) == 1:
        values = dict(H=1, W=x_shape[2], KH=1, KW=kernel[0], SH=1, SW=geo.strides[0], DH=1, DW=geo.dilations[0],
                      PT=0, PL=geo.pads_begin[0], PB=0, PR=geo.pads_end[0], OH=1, OW=geo.out[0])
    else:
        values = dict(H=x_shape[2], W=x_shape[3], KH=kernel[0], KW=kernel[1], SH=geo.strides[0], SW=geo.strides[1],
                      DH=geo.dilations[0], DW=geo.dilations[1], PT=geo.pads_begin[0], PL=geo.pads_begin[1],
                      PB=geo.pads_end[0], PR=geo.pads_end[1], OH=geo.out[0], OW=geo.out[1])
    values = dict(N=x_shape[0], C=x_shape[1], **values)
    return "const int64_t " + ", ".join(f"{k} = {cexpr(v)}" for k, v in values.items()) + ";\n"


_IM2COL = """
std::vector<float> column(KK * P);
for (int64_t n = 0; n < N; ++n) {
  for (int64_t g = 0; g < G; ++g) {
    const float* image = X + (n * C + g * CG) * H * W;
    #pragma omp parallel for
    for (int64_t r = 0; r < KK; ++r) {
      const int64_t kw = r % KW, kh = (r / KW) % KH, c = r / (KW * KH);
      float* row = column.data() + r * P;
      const float* plane = image + c * H * W;
      for (int64_t oh = 0; oh < OH; ++oh) {
        const int64_t ih = oh * SH - PT + kh * DH;
        float* out = row + oh * OW;
        if (ih < 0 || ih >= H) { for (int64_t ow = 0; ow < OW; ++ow) out[ow] = 0.0f; continue; }
        for (int64_t ow = 0; ow < OW; ++ow) {
          const int64_t iw = ow * SW - PL + kw * DW;
          out[ow] = (iw >= 0 && iw < W) ? plane[ih * W + iw] : 0.0f;
        }
      }
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, MG, P, KK, 1.0f, Wt + g * MG * KK, KK,
                column.data(), P, 0.0f, Y + (n * M + g * MG) * P, P);
  }
}
"""

_POINTWISE = """
for (int64_t n = 0; n < N; ++n)
  for (int64_t g = 0; g < G; ++g)
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, MG, P, CG, 1.0f, Wt + g * MG * CG, CG,
                X + (n * C + g * CG) * P, P, 0.0f, Y + (n * M + g * MG) * P, P);
"""

_DEPTHWISE = """
#pragma omp parallel for
for (int64_t plane = 0; plane < N * M; ++plane) {
  const int64_t m = plane % M, c = m / MG;
  const float* image = X + ((plane / M) * C + c) * H * W;
  const float* kernel = Wt + m * KH * KW;
  float* out = Y + plane * P;
  for (int64_t oh = 0; oh < OH; ++oh)
    for (int64_t ow = 0; ow < OW; ++ow) {
      float acc = 0.0f;
      for (int64_t kh = 0; kh < KH; ++kh) {
        const int64_t ih = oh * SH - PT + kh * DH;
        if (ih < 0 || ih >= H) continue;
        for (int64_t kw = 0; kw < KW; ++kw) {
          const int64_t iw = ow * SW - PL + kw * DW;
          if (iw >= 0 && iw < W) acc += image[ih * W + iw] * kernel[kh * KW + kw];
        }
      }
      out[oh * OW + ow] = acc;
    }
}
"""

_BIAS = """
#pragma omp parallel for
for (int64_t plane = 0; plane < N * M; ++plane) {
  const float b = Bias[plane % M];
  float* out = Y + plane * P;
  for (int64_t p = 0; p < P; ++p) out[p] += b;
}
"""


@expansion("Conv", environments=[OpenBLAS])
def conv(ctx: Ctx):
    x, w, b, y = (ctx.connector("in", 0), ctx.connector("in", 1), ctx.connector("in", 2), ctx.connector("out", 0))
    if ctx.desc(x).dtype.ctype != "float":
        raise CompileError(f"Conv {ctx.node.label!r}: only float32 is supported")
    x_shape, w_shape = ctx.shape(x), ctx.shape(w)
    kernel = ctx.node.attr("kernel_shape") or list(w_shape[2:])
    group = ctx.node.attr("group", 1)
    code = _geometry_constants(ctx, x_shape, kernel)
    code += (f"const int64_t M = {cexpr(w_shape[0])}, G = {group}, CG = C / G, MG = M / G, KK = CG * KH * KW, "
             "P = OH * OW;\n")
    code += f"const float* X = {ctx.ptr(x)}; const float* Wt = {ctx.ptr(w)}; float* Y = {ctx.ptr(y)};\n"
    pointwise = all(k == 1 for k in kernel) and not any(
        ctx.node.attr(a) and any(v != (1 if a != "pads" else 0) for v in ctx.node.attr(a))
        for a in ("strides", "pads", "dilations")) and ctx.node.attr("auto_pad", "NOTSET") in ("NOTSET", "VALID")
    depthwise = group > 1 and w_shape[1] == 1
    code += _POINTWISE if pointwise else (_DEPTHWISE if depthwise else _IM2COL)
    if b is not None:
        code += f"const float* Bias = {ctx.ptr(b)};\n" + _BIAS
    return ctx.tasklet(code)


def _pool_code(ctx: Ctx, x_shape) -> str:
    kernel = ctx.node.attr("kernel_shape")
    code = _geometry_constants(ctx, x_shape, kernel, bool(ctx.node.attr("ceil_mode", 0)))
    is_max = ctx.node.op_type == "MaxPool"
    ctype = ctx.desc(ctx.connector("in", 0)).dtype.ctype
    init = f"std::numeric_limits<{ctype}>::lowest()" if is_max else "0"
    update = "acc = std::max(acc, x[ih * W + iw]);" if is_max else "acc += x[ih * W + iw]; ++count;"
    if is_max:
        finish = "y[oh * OW + ow] = acc;"
    elif ctx.node.attr("count_include_pad", 0):
        finish = ("const int64_t rows = std::min(oh * SH - PT + (KH - 1) * DH, H + PB - 1) - (oh * SH - PT) + 1; "
                  "const int64_t cols = std::min(ow * SW - PL + (KW - 1) * DW, W + PR - 1) - (ow * SW - PL) + 1; "
                  f"y[oh * OW + ow] = acc / ({ctype})(((rows - 1) / DH + 1) * ((cols - 1) / DW + 1));")
    else:
        finish = f"y[oh * OW + ow] = acc / ({ctype})count;"
    return code + f"""
for (int64_t oh = 0; oh < OH; ++oh)
  for (int64_t ow = 0; ow < OW; ++ow) {{
    {ctype} acc = {init}; int64_t count = 0;
    for (int64_t kh = 0; kh < KH; ++kh) {{
      const int64_t ih = oh * SH - PT + kh * DH;
      if (ih < 0 || ih >= H) continue;
      for (int64_t kw = 0; kw < KW; ++kw) {{
        const int64_t iw = ow * SW - PL + kw * DW;
        if (iw >= 0 && iw < W) {{ {update} }}
      }}
    }}
    (void)count;
    {finish}
  }}
"""


@expansion("MaxPool", "AveragePool")
def pool(ctx: Ctx):
    x, y = ctx.connector("in", 0), ctx.connector("out", 0)
    x_shape, y_shape = ctx.shape(x), ctx.shape(y)
    spatial = ", ".join(f"0:{d}" for d in x_shape[2:])
    out_spatial = ", ".join(f"0:{d}" for d in y_shape[2:])
    sdfg, state = ctx.nested()
    add_map(state, ctx.node.op_type.lower(), index_ranges(x_shape[:2]), {"x": f"{x}[i0, i1, {spatial}]"},
            _pool_code(ctx, x_shape), {"y": f"{y}[i0, i1, {out_spatial}]"}, pointers=["x", "y"])
    return sdfg
