"""Conv (float32: the direct kernel of ``conv_direct`` where lowering packed the weights; otherwise im2col + BLAS
GEMM in per-thread tiles; depthwise planes); MaxPool, AveragePool and LpPool (1-3 spatial dims, parallel over
planes)."""
from __future__ import annotations

from dace.libraries.blas.environments.openblas import OpenBLAS

from sdflow.ir.errors import CompileError
from sdflow.ir.ops.nn import DEPTHWISE_ROW_WIDTH, Conv, conv_transpose_geometry, is_pointwise, window_geometry
from .. import threads
from ..options import KernelOptions
from ._expansion import Ctx, add_map, cexpr, expansion, index_ranges, product
from .conv_direct import PACKED_CONNECTOR


def _conv_geometry(node, x_shape, kernel, out_channels, group, ceil_mode=False) -> str:
    """A C++ ``sdflow_kernels::ConvGeometry g_`` (codegen/kernels/conv.h) of a convolution or a pool's window over
    ``x_shape`` (1-D inputs as H = 1)."""
    geo = window_geometry(node, list(x_shape[2:]), kernel, ceil_mode)
    if len(kernel) == 1:
        values = [1, x_shape[2], out_channels, group, 1, kernel[0], 1, geo.strides[0], 1, geo.dilations[0],
                  0, geo.pads_begin[0], 0, geo.pads_end[0], 1, geo.out[0]]
    else:
        values = [x_shape[2], x_shape[3], out_channels, group, kernel[0], kernel[1], geo.strides[0], geo.strides[1],
                  geo.dilations[0], geo.dilations[1], geo.pads_begin[0], geo.pads_begin[1], geo.pads_end[0],
                  geo.pads_end[1], geo.out[0], geo.out[1]]
    fields = ", ".join(f"(int64_t)({cexpr(v)})" for v in [x_shape[0], x_shape[1], *values])
    return f"const sdflow_kernels::ConvGeometry g_{{{fields}}};\n"


def uses_depthwise_rows(out_width, column_stride, implementation: str = "",
                        options: KernelOptions = KernelOptions()) -> bool:
    """Whether a float32 depthwise convolution runs as ``conv_depthwise_rows`` (codegen/kernels/conv.h): on
    AVX-512, with a column stride of 2, or of 1 and output rows of at most DEPTHWISE_ROW_WIDTH (the option
    ``depthwise_rows=false``, or an op node's ``implementation`` naming ``depthwise-planes``, keeps
    ``conv_depthwise_planes``). Wider stride-1 rows run as fast as the padded plane's flat range (every lane a
    position; measured equal on MobileNetV2's 56x56 and 112x112 layers), narrow ones lost most of their time there
    to copying and looping per plane (7x7 and 14x14 planes: 2.8-3.2x faster this way, 28x28: 1.3x)."""
    if not threads.has_avx512() or column_stride > 2 or not options.depthwise_rows \
            or "depthwise-planes" in implementation.split("+"):
        return False
    return column_stride == 2 or (getattr(out_width, "is_number", True) and int(out_width) <= DEPTHWISE_ROW_WIDTH)


# The convolution kernels' headers (codegen/kernels): conv_direct.h and conv_gemm.h include conv.h.
CONV_INCLUDES = '#include "conv_direct.h"\n#include "conv_gemm.h"\n'


def packed_input(ctx: Ctx) -> tuple[str, str] | None:
    """The node's pre-packed weights, when lowering gave it some (``conv_direct.prepack``): their pointer, and the
    kernel form their layout is for: 'winograd' ([16][M / 8][C][8]), 'channels' ([M / 16][C * KH * KW][16]) or
    'packed' ([M / 8][C * KH * KW][8])."""
    if PACKED_CONNECTOR not in ctx.inputs:
        return None
    shape = ctx.shape(PACKED_CONNECTOR)
    kind = "winograd" if len(shape) == 4 else "channels" if int(shape[-1]) == 16 else "packed"
    return ctx.ptr(PACKED_CONNECTOR), kind


def conv_includes(packed=None) -> str:
    """The code_global of a convolution kernel's tasklet."""
    return CONV_INCLUDES


def _epilogue(name: str, epilogue: tuple[str, str] | None) -> tuple[str, str]:
    """(declaration, argument): the C++ epilogue functor ``name`` of a convolution kernel call for ``epilogue`` =
    (statements, final expression) over a_ (the convolution plus bias), n_, m_ and p_ (sample, channel, position in
    the plane); sdflow_kernels::NoEpilogue when there is none."""
    statements, final = epilogue or ("", "a_")
    if not statements and final == "a_":
        return "", "sdflow_kernels::NoEpilogue{}"
    return (f"auto {name} = [&](int64_t n_, int64_t m_, int64_t p_, float a_) -> float {{ (void)n_; (void)m_; "
            f"(void)p_; {statements} return {final}; }};\n"), name


# Kernel form -> the conv_direct.h function that runs weights packed for it.
_DIRECT_KERNELS = {"packed": "conv_direct", "channels": "conv_direct_channels", "winograd": "conv_winograd"}


def conv_code(node, x_shape, w_shape, x: str, w: str, y: str, bias: str | None = None,
              epilogue: tuple[str, str] | None = None, packed: tuple[str, str] | None = None,
              implementation: str = "") -> str:
    """C++ of a float32 Conv from pointers ``x``, ``w`` (and ``bias``) into ``y``: one call of a kernel of
    codegen/kernels/conv*.h. ``epilogue`` = (statements, final expression) applied to every output element while
    its plane or tile is in cache: the statements read ``a_`` (the convolution plus bias) and may index other
    tensors by sample ``n_``, channel ``m_`` and position ``p_`` in the plane. ``packed``: ``packed_input``'s
    pointer to the weights pre-packed for the direct kernel (or transformed for its Winograd form; ``conv_direct``),
    which then runs instead of im2col + BLAS."""
    kernel = node.attr("kernel_shape") or list(w_shape[2:])
    group = node.attr("group", 1)
    declaration, functor = _epilogue("epilogue_", epilogue)
    code = _conv_geometry(node, x_shape, kernel, w_shape[0], group) + declaration
    depthwise = group > 1 and w_shape[1] == 1
    if packed is not None:
        function, weights = _DIRECT_KERNELS[packed[1]], packed[0]
    elif depthwise and uses_depthwise_rows(window_geometry(node, list(x_shape[2:]), kernel).out[-1],
                                           (node.attr("strides") or [1])[-1], implementation):
        function, weights = "conv_depthwise_rows", w
    else:
        function, weights = ("conv_depthwise_planes" if depthwise else "conv_gemm"), w
    return code + f"sdflow_kernels::{function}({x}, {weights}, {bias or 'nullptr'}, {y}, g_, {functor});\n"


def conv_depthwise_code(conv1, conv2, x_shape, w1_shape, mid_shape, w2_shape, x: str, w1: str, w2: str, y: str,
                        bias1: str | None, bias2: str | None, epilogue1: tuple[str, str], epilogue2: tuple[str, str],
                        packed: tuple[str, str] | None, implementation: str = "") -> str:
    """C++ of a 1x1 convolution (``conv1``: x -> the expanded tensor of ``mid_shape``, then ``epilogue1``) and a
    depthwise one of its result (``conv2``, then ``epilogue2``) into ``y``; epilogues as in ``conv_code``. With
    the direct kernel's packed weights (``packed``), a 1x1 ``conv1``, a depthwise ``conv2`` and a column stride of
    at most 2 (what depthwise_rows' vector form serves), ``sdflow_kernels::conv_pointwise_depthwise``; otherwise
    (any two convolutions) the two one after the other through a per-thread scratch tensor."""
    kernel2 = conv2.attr("kernel_shape") or list(w2_shape[2:])
    pointwise = len(w1_shape) == 4 and is_pointwise(conv1, w1_shape[2:]) and conv1.attr("group", 1) == 1
    depthwise = w2_shape[1] == 1 and conv2.attr("group", 1) == mid_shape[1] and len(mid_shape) == 4
    if (packed is None or packed[1] != "packed" or not pointwise or not depthwise
            or (conv2.attr("strides") or [1])[-1] > 2):
        scratch = f"float* mid_ = sdflow_kernels::scratch_floats((size_t)({cexpr(product(mid_shape))}));\n"
        return (scratch + "{\n" + conv_code(conv1, x_shape, w1_shape, x, w1, "mid_", bias1, epilogue1, packed)
                + "}\n{\n" + conv_code(conv2, mid_shape, w2_shape, "mid_", w2, y, bias2, epilogue2,
                                        implementation=implementation) + "}\n")
    declaration1, functor1 = _epilogue("epilogue1_", epilogue1)
    declaration2, functor2 = _epilogue("epilogue2_", epilogue2)
    return (_conv_geometry(conv2, mid_shape, kernel2, w2_shape[0], conv2.attr("group", 1)) + declaration1
            + declaration2 + f"sdflow_kernels::conv_pointwise_depthwise({x}, (int64_t)({cexpr(x_shape[1])}), "
            f"{packed[0]}, {bias1 or 'nullptr'}, {functor1}, {w2}, {bias2 or 'nullptr'}, {y}, g_, {functor2});\n")


@expansion("Conv", environments=[OpenBLAS])
def conv(ctx: Ctx):
    x, w, b, y = (ctx.connector("in", 0), ctx.connector("in", 1), ctx.connector("in", 2), ctx.connector("out", 0))
    if ctx.desc(x).dtype.ctype != "float":
        raise CompileError(f"Conv {ctx.node.label!r}: only float32 is supported")
    if len(ctx.shape(x)) == 5:
        return ctx.tasklet(_conv3d_call(ctx, x, w, b, y), includes='#include "conv3d.h"')
    packed = packed_input(ctx)
    # The direct kernel reads the packed copy only.
    return ctx.tasklet(conv_code(ctx.node, ctx.shape(x), ctx.shape(w), ctx.ptr(x), ctx.ptr(w), ctx.ptr(y),
                                 ctx.ptr(b) if b else None, packed=packed,
                                 implementation=ctx.node.implementation or ""),
                       includes=conv_includes(packed), unread=(w,) if packed else ())


def _conv3d_call(ctx: Ctx, x: str, w: str, b: str | None, y: str) -> str:
    """A 3-D convolution (video models): one call of ``sdflow_kernels::conv3d`` (codegen/kernels/conv3d.h)."""
    x_shape, w_shape = ctx.shape(x), ctx.shape(w)
    geo = Conv.geometry(ctx.node, x_shape, w_shape)
    fields = [*x_shape, w_shape[0], ctx.node.attr("group", 1), *geo.kernel, *geo.strides, *geo.dilations,
              *geo.pads_begin, *geo.out]
    geometry = ", ".join(f"(int64_t)({cexpr(v)})" for v in fields)
    bias = ctx.ptr(b) if b else "nullptr"
    return f"sdflow_kernels::conv3d({ctx.ptr(x)}, {ctx.ptr(w)}, {bias}, {ctx.ptr(y)}, {{{geometry}}});"


def _window_values(x_shape, geo) -> dict:
    """Per-axis window values for 3-D loops (D H W; 1-D and 2-D inputs get leading size-1 axes): sizes D H W,
    kernel KD KH KW, strides SD SH SW, dilations DD DH DW, leading pads PD PH PW, trailing pads QD QH QW,
    outputs OD OH OW."""
    lead = 3 - len(geo.kernel)
    fields = dict(zip(("", "K", "S", "D", "P", "Q", "O"),
                      ([1] * lead + list(x_shape[2:]), [1] * lead + list(geo.kernel), [1] * lead + geo.strides,
                       [1] * lead + geo.dilations, [0] * lead + geo.pads_begin, [0] * lead + geo.pads_end,
                       [1] * lead + geo.out)))
    return {f"{prefix}{axis}": value[i] for prefix, value in fields.items() for i, axis in enumerate("DHW")}


def _constants(values: dict) -> str:
    return "const int64_t " + ", ".join(f"{k}_ = {cexpr(v)}" for k, v in values.items()) + ";\n"


def _pool_constants(ctx: Ctx, x_shape) -> str:
    """C++ constants of the pool's window (``_window_values``) and the channel count C."""
    geo = window_geometry(ctx.node, list(x_shape[2:]), ctx.node.attr("kernel_shape"),
                          bool(ctx.node.attr("ceil_mode", 0)), max_rank=3)
    return _constants({**_window_values(x_shape, geo), "C": x_shape[1]})


def _pool_code(ctx: Ctx, x_shape) -> str:
    """The window loop of one (n, c) plane: ``x`` and ``y`` (and ``ind``, MaxPool's indices) point at it."""
    op_type = ctx.node.op_type
    ctype = ctx.desc(ctx.connector("in", 0)).dtype.ctype
    acc_type = "double" if ctype == "double" else "float"
    p = ctx.node.attr("p", 2) if op_type == "LpPool" else None
    if op_type == "MaxPool":
        init = f"std::numeric_limits<{ctype}>::lowest()"
        update = "if (v_ > acc_ || (v_ != v_ && acc_ == acc_)) { acc_ = v_; best_ = (id_ * H_ + ih_) * W_ + iw_; "\
                 "best_cm_ = (iw_ * H_ + ih_) * D_ + id_; }"
    elif op_type == "AveragePool":
        init, update = "0", "acc_ += v_; ++count_;"
    else:  # LpPool
        init = "0"
        update = {1: "acc_ += std::abs(v_);", 2: "acc_ += v_ * v_;"}.get(
            p, f"acc_ += std::pow(std::abs(({acc_type})v_), ({acc_type}){p});")
    if op_type == "MaxPool":
        finish = "y[out_] = acc_;"
        if ctx.connector("out", 1):
            column_major = ctx.node.attr("storage_order", 0) == 1
            finish += f" ind[out_] = plane_ * D_ * H_ * W_ + {'best_cm_' if column_major else 'best_'};"
    elif op_type == "LpPool":
        root = {1: "acc_", 2: "std::sqrt(acc_)"}.get(p, f"std::pow(acc_, ({acc_type})1 / ({acc_type}){p})")
        finish = f"y[out_] = ({ctype})({root});"
    elif ctx.node.attr("count_include_pad", 0):
        # Padded positions count, positions past the padding (ceil_mode) do not.
        counts = [f"((std::min({o}s_ + (K{a}_ - 1) * D{a}_, {a}_ + Q{a}_ - 1) - {o}s_) / D{a}_ + 1)"
                  for a, o in (("D", "od"), ("H", "oh"), ("W", "ow"))]
        finish = f"y[out_] = ({ctype})(acc_ / ({acc_type})({' * '.join(counts)}));"
    else:
        finish = f"y[out_] = ({ctype})(acc_ / ({acc_type})count_);"
    return _pool_constants(ctx, x_shape) + f"""
const int64_t plane_ = i0 * C_ + i1; (void)plane_;
for (int64_t od_ = 0; od_ < OD_; ++od_)
 for (int64_t oh_ = 0; oh_ < OH_; ++oh_)
  for (int64_t ow_ = 0; ow_ < OW_; ++ow_) {{
    const int64_t ods_ = od_ * SD_ - PD_, ohs_ = oh_ * SH_ - PH_, ows_ = ow_ * SW_ - PW_;
    const int64_t out_ = (od_ * OH_ + oh_) * OW_ + ow_;
    {acc_type if op_type != "MaxPool" else ctype} acc_ = {init}; int64_t count_ = 0, best_ = -1, best_cm_ = -1;
    for (int64_t kd_ = 0; kd_ < KD_; ++kd_) {{
     const int64_t id_ = ods_ + kd_ * DD_;
     if (id_ < 0 || id_ >= D_) continue;
     for (int64_t kh_ = 0; kh_ < KH_; ++kh_) {{
      const int64_t ih_ = ohs_ + kh_ * DH_;
      if (ih_ < 0 || ih_ >= H_) continue;
      for (int64_t kw_ = 0; kw_ < KW_; ++kw_) {{
        const int64_t iw_ = ows_ + kw_ * DW_;
        if (iw_ < 0 || iw_ >= W_) continue;
        const {ctype} v_ = x[(id_ * H_ + ih_) * W_ + iw_];
        {update}
      }}
     }}
    }}
    (void)count_; (void)best_; (void)best_cm_;
    {finish}
  }}
"""


@expansion("MaxPool", "AveragePool", "LpPool")
def pool(ctx: Ctx):
    x, y, ind = ctx.connector("in", 0), ctx.connector("out", 0), ctx.connector("out", 1)
    x_shape, y_shape = ctx.shape(x), ctx.shape(y)
    if ctx.node.op_type == "MaxPool" and not ind and len(x_shape) == 4 and ctx.desc(x).dtype.ctype == "float":
        # sdflow_kernels::max_pool_plane (codegen/kernels/conv.h): over -inf padded phase planes, vectorised.
        geometry = _conv_geometry(ctx.node, x_shape, ctx.node.attr("kernel_shape"), 1, 1,
                                  bool(ctx.node.attr("ceil_mode", 0)))
        code, includes = geometry + "sdflow_kernels::max_pool_plane(x, y, g_);\n", '#include "conv.h"\n'
    else:
        code, includes = _pool_code(ctx, x_shape), ""
    spatial = ", ".join(f"0:{d}" for d in x_shape[2:])
    out_spatial = ", ".join(f"0:{d}" for d in y_shape[2:])
    sdfg, state = ctx.nested()
    outputs = {"y": f"{y}[i0, i1, {out_spatial}]"}
    if ind:
        outputs["ind"] = f"{ind}[i0, i1, {out_spatial}]"
    add_map(state, ctx.node.op_type.lower(), index_ranges(x_shape[:2]), {"x": f"{x}[i0, i1, {spatial}]"},
            code, outputs, pointers=["x", *outputs], includes=includes)
    return sdfg


@expansion("CausalConvWithState")
def causal_conv_with_state(ctx: Ctx):
    x, w, bias, past = (ctx.connector("in", p) for p in range(4))
    y, present = ctx.connector("out", 0), ctx.connector("out", 1)
    batch, channels, length = ctx.shape(x)
    k = ctx.shape(w)[2]
    ctype = ctx.desc(x).dtype.ctype
    acc = "double" if ctype == "double" else "float"
    inputs = {"x": f"{x}[i0, i1, 0:{length}]", "w": f"{w}[i1, 0, 0:{k}]"}
    if bias:
        inputs["b"] = f"{bias}[i1]"
    if past:
        inputs["past"] = f"{past}[i0, i1, 0:{cexpr(k - 1)}]"
    outputs = {"y": f"{y}[i0, i1, 0:{length}]"}
    if present and k != 1:
        outputs["present"] = f"{present}[i0, i1, 0:{cexpr(k - 1)}]"
    at = "(p_ < K_ - 1 ? " + ("past[p_]" if past else f"({ctype})0") + " : x[p_ - (K_ - 1)])"
    activation = "v_ = v_ / (1 + std::exp(-v_));" if ctx.node.attr("activation", "none") in ("silu", "swish") else ""
    code = f"""
const int64_t L_ = {cexpr(length)}, K_ = {cexpr(k)};
for (int64_t t_ = 0; t_ < L_; ++t_) {{
  {acc} sum_ = {"b" if bias else "0"};
  for (int64_t j_ = 0; j_ < K_; ++j_) {{ const int64_t p_ = t_ + j_; sum_ += ({acc})w[j_] * ({acc}){at}; }}
  {acc} v_ = ({acc})({ctype})sum_;
  {activation}
  y[t_] = ({ctype})v_;
}}
"""
    if "present" in outputs:
        code += f"for (int64_t i_ = 0; i_ < K_ - 1; ++i_) {{ const int64_t p_ = L_ + i_; present[i_] = {at}; }}\n"
    sdfg, state = ctx.nested()
    add_map(state, "causal_conv", index_ranges([batch, channels]), inputs, code, outputs,
            pointers=[n for n in (*inputs, *outputs) if n != "b"])
    return sdfg


@expansion("ConvTranspose")
def conv_transpose(ctx: Ctx):
    """Parallel over output planes (sample, output channel): each scatters its group's input channels."""
    x, w, b, y = (ctx.connector("in", 0), ctx.connector("in", 1), ctx.connector("in", 2), ctx.connector("out", 0))
    x_shape, w_shape = ctx.shape(x), ctx.shape(w)
    geo = conv_transpose_geometry(ctx.node, x_shape, w_shape)
    group = ctx.node.attr("group", 1)
    values = {**_window_values(x_shape, geo), "N": x_shape[0], "C": x_shape[1], "G": group, "MG": w_shape[1]}
    ctype = ctx.desc(y).dtype.ctype
    acc = "double" if ctype == "double" else "float"
    code = _constants(values) + f"""
const int64_t M_ = MG_ * G_, CG_ = C_ / G_, PLANE_ = OD_ * OH_ * OW_, KK_ = KD_ * KH_ * KW_;
const {ctype}* X_ = {ctx.ptr(x)}; const {ctype}* Wt_ = {ctx.ptr(w)}; {ctype}* Y_ = {ctx.ptr(y)};
#pragma omp parallel for collapse(2)
for (int64_t n_ = 0; n_ < N_; ++n_)
  for (int64_t m_ = 0; m_ < M_; ++m_) {{
    const int64_t g_ = m_ / MG_, ml_ = m_ % MG_;
    std::vector<{acc}> out_(PLANE_, ({acc}){f"{ctx.ptr(b)}[m_]" if b else "0"});
    for (int64_t c_ = g_ * CG_; c_ < (g_ + 1) * CG_; ++c_) {{
      const {ctype}* in_ = X_ + (n_ * C_ + c_) * D_ * H_ * W_;
      const {ctype}* k_ = Wt_ + (c_ * MG_ + ml_) * KK_;
      for (int64_t id_ = 0; id_ < D_; ++id_) for (int64_t ih_ = 0; ih_ < H_; ++ih_) for (int64_t iw_ = 0; iw_ < W_; ++iw_) {{
        const {acc} v_ = in_[(id_ * H_ + ih_) * W_ + iw_];
        for (int64_t kd_ = 0; kd_ < KD_; ++kd_) {{
          const int64_t od_ = id_ * SD_ + kd_ * DD_ - PD_;
          if (od_ < 0 || od_ >= OD_) continue;
          for (int64_t kh_ = 0; kh_ < KH_; ++kh_) {{
            const int64_t oh_ = ih_ * SH_ + kh_ * DH_ - PH_;
            if (oh_ < 0 || oh_ >= OH_) continue;
            for (int64_t kw_ = 0; kw_ < KW_; ++kw_) {{
              const int64_t ow_ = iw_ * SW_ + kw_ * DW_ - PW_;
              if (ow_ < 0 || ow_ >= OW_) continue;
              out_[(od_ * OH_ + oh_) * OW_ + ow_] += v_ * ({acc})k_[(kd_ * KH_ + kh_) * KW_ + kw_];
            }}
          }}
        }}
      }}
    }}
    {ctype}* plane_ = Y_ + (n_ * M_ + m_) * PLANE_;
    for (int64_t p_ = 0; p_ < PLANE_; ++p_) plane_[p_] = ({ctype})out_[p_];
  }}
"""
    return ctx.tasklet(code)


@expansion("LRN")
def lrn(ctx: Ctx):
    """Parallel over (sample, channel) planes; the window's squares are summed per pixel."""
    x, y = ctx.connector("in", 0), ctx.connector("out", 0)
    shape = ctx.shape(x)
    size = ctx.node.attr("size")
    alpha, beta, bias = (float(ctx.node.attr(a, d)) for a, d in (("alpha", 1e-4), ("beta", 0.75), ("bias", 1.0)))
    ctype = ctx.desc(x).dtype.ctype
    acc = "double" if ctype == "double" else "float"
    code = f"""
const int64_t N_ = {cexpr(shape[0])}, C_ = {cexpr(shape[1])}, P_ = {cexpr(product(shape[2:]))};
const {ctype}* X_ = {ctx.ptr(x)}; {ctype}* Y_ = {ctx.ptr(y)};
#pragma omp parallel for collapse(2)
for (int64_t n_ = 0; n_ < N_; ++n_)
  for (int64_t c_ = 0; c_ < C_; ++c_) {{
    const int64_t low_ = std::max<int64_t>(0, c_ - {(size - 1) // 2});
    const int64_t high_ = std::min<int64_t>(C_, c_ + {(size - 1) - (size - 1) // 2 + 1});
    for (int64_t p_ = 0; p_ < P_; ++p_) {{
      {acc} sum_ = 0;
      for (int64_t k_ = low_; k_ < high_; ++k_) {{ const {acc} v_ = X_[(n_ * C_ + k_) * P_ + p_]; sum_ += v_ * v_; }}
      const {acc} v_ = X_[(n_ * C_ + c_) * P_ + p_];
      Y_[(n_ * C_ + c_) * P_ + p_] = ({ctype})(v_ / std::pow(({acc}){bias!r} + ({acc}){alpha / size!r} * sum_, ({acc}){beta!r}));
    }}
  }}
"""
    return ctx.tasklet(code)
