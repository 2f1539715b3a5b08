"""Conv (float32: codegen/kernels/conv_direct.h where lowering packed the weights, else conv_gemm.h's im2col +
BLAS or conv.h's depthwise kernels; 3-D: conv3d.h), ConvTranspose and CausalConvWithState (conv_general.h),
MaxPool, AveragePool, LpPool and LRN (pool.h): each one call of a kernel with its geometry."""
from __future__ import annotations

from dace.libraries.blas.environments.openblas import OpenBLAS

from sdflow.ir.errors import CompileError
from sdflow.ir.ops.nn import (DEPTHWISE_ROW_WIDTH, Conv, conv_transpose_geometry, is_pointwise,
                              small_depthwise_plane, window_geometry)
from .. import threads
from ..options import KernelOptions
from ._expansion import Ctx, add_map, cexpr, expansion, index_ranges, int_args, product
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
    return f"const sdflow_kernels::ConvGeometry g_{{{int_args([x_shape[0], x_shape[1], *values])}}};\n"


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


# Depthwise forms -> the conv.h kernel and the implementation name on the op node (select.select_kernels).
DEPTHWISE_KERNELS = {"channels": "conv_depthwise_channels", "rows": "conv_depthwise_rows",
                     "planes": "conv_depthwise_planes"}


def depthwise_form(node, x_shape, w_shape, implementation: str = "",
                   options: KernelOptions = KernelOptions()) -> str:
    """Which kernel of codegen/kernels/conv.h a float32 depthwise convolution (``group > 1``, one input channel per
    group) runs: 'channels' (vectors over channels: small planes without a channel multiplier,
    ``small_depthwise_plane``; the option ``depthwise_channels=false`` turns it off), 'rows'
    (``uses_depthwise_rows``) or 'planes'. An op node's ``implementation`` naming one (``depthwise-<form>``, or
    as a part of a fused pair's ``+``) decides."""
    for part in implementation.split("+"):
        if part.startswith("depthwise-") and part[len("depthwise-"):] in DEPTHWISE_KERNELS:
            return part[len("depthwise-"):]
    kernel = node.attr("kernel_shape") or list(w_shape[2:])
    out_width = window_geometry(node, list(x_shape[2:]), kernel).out[-1]
    if options.depthwise_channels and w_shape[0] == x_shape[1] == node.attr("group", 1) \
            and small_depthwise_plane(out_width, int(product(kernel))):
        return "channels"
    return "rows" if uses_depthwise_rows(out_width, (node.attr("strides") or [1])[-1], options=options) else "planes"


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
    elif depthwise:
        function, weights = DEPTHWISE_KERNELS[depthwise_form(node, x_shape, w_shape, implementation)], w
    else:
        function, weights = "conv_gemm", w
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
                       includes=CONV_INCLUDES, unread=(w,) if packed else ())


def _conv3d_call(ctx: Ctx, x: str, w: str, b: str | None, y: str) -> str:
    """A 3-D convolution (video models): one call of ``sdflow_kernels::conv3d`` (codegen/kernels/conv3d.h)."""
    x_shape, w_shape = ctx.shape(x), ctx.shape(w)
    geo = Conv.geometry(ctx.node, x_shape, w_shape)
    fields = [*x_shape, w_shape[0], ctx.node.attr("group", 1), *geo.kernel, *geo.strides, *geo.dilations,
              *geo.pads_begin, *geo.out]
    geometry = int_args(fields)
    bias = ctx.ptr(b) if b else "nullptr"
    return f"sdflow_kernels::conv3d({ctx.ptr(x)}, {ctx.ptr(w)}, {bias}, {ctx.ptr(y)}, {{{geometry}}});"


def _window_fields(x_shape, geo) -> list:
    """The window fields of ``sdflow_kernels::PoolGeometry`` (codegen/kernels/pool.h) in its order: sizes D H W,
    kernel, strides, dilations, leading pads, trailing pads, outputs (1-D and 2-D inputs get leading size-1 axes)."""
    lead = 3 - len(geo.kernel)
    return [*([1] * lead + list(x_shape[2:])), *([1] * lead + list(geo.kernel)), *([1] * lead + geo.strides),
            *([1] * lead + geo.dilations), *([0] * lead + geo.pads_begin), *([0] * lead + geo.pads_end),
            *([1] * lead + geo.out)]


def _pool_geometry(fields: list, kind: int = 0, count_include_pad: bool = False, p: float = 2.0,
                   column_major: bool = False) -> str:
    """A C++ ``sdflow_kernels::PoolGeometry geometry_`` from ``_window_fields`` and the pooling's kind."""
    values = int_args(fields)
    flags = f"{kind}, {'true' if count_include_pad else 'false'}, {float(p)!r}, {'true' if column_major else 'false'}"
    return f"const sdflow_kernels::PoolGeometry geometry_{{{values}, {flags}}};\n"


@expansion("MaxPool", "AveragePool", "LpPool")
def pool(ctx: Ctx):
    """A map over (sample, channel) planes, each one call of ``sdflow_kernels::pool_plane`` (codegen/kernels/pool.h)
    or, for a float32 2-D MaxPool without indices or AveragePool, ``max_pool_plane`` / ``average_pool_plane``
    (conv.h)."""
    x, y, ind = ctx.connector("in", 0), ctx.connector("out", 0), ctx.connector("out", 1)
    x_shape, y_shape = ctx.shape(x), ctx.shape(y)
    node = ctx.node
    if node.op_type in ("MaxPool", "AveragePool") and not ind and len(x_shape) == 4 \
            and ctx.desc(x).dtype.ctype == "float":
        # Over padded phase planes, vectorised.
        geometry = _conv_geometry(node, x_shape, node.attr("kernel_shape"), 1, 1, bool(node.attr("ceil_mode", 0)))
        call = "sdflow_kernels::max_pool_plane(x, y, g_);" if node.op_type == "MaxPool" else \
            f"sdflow_kernels::average_pool_plane(x, y, g_, {'true' if node.attr('count_include_pad', 0) else 'false'});"
        code, includes = geometry + call + "\n", '#include "conv.h"\n'
    else:
        geo = window_geometry(node, list(x_shape[2:]), node.attr("kernel_shape"), bool(node.attr("ceil_mode", 0)),
                              max_rank=3)
        kind = {"MaxPool": 0, "AveragePool": 1, "LpPool": 2}[node.op_type]
        geometry = _pool_geometry(_window_fields(x_shape, geo), kind,
                                  kind == 1 and bool(node.attr("count_include_pad", 0)),
                                  node.attr("p", 2) if kind == 2 else 2.0,
                                  kind == 0 and node.attr("storage_order", 0) == 1)
        indices = "ind" if ind else "static_cast<int64_t*>(nullptr)"
        plane = f"i0 * (int64_t)({cexpr(x_shape[1])}) + i1"
        code = geometry + f"sdflow_kernels::pool_plane(x, y, {indices}, {plane}, geometry_);\n"
        includes = '#include "pool.h"\n'
    spatial = ", ".join(f"0:{d}" for d in x_shape[2:])
    out_spatial = ", ".join(f"0:{d}" for d in y_shape[2:])
    sdfg, state = ctx.nested()
    outputs = {"y": f"{y}[i0, i1, {out_spatial}]"}
    if ind:
        outputs["ind"] = f"{ind}[i0, i1, {out_spatial}]"
    add_map(state, node.op_type.lower(), index_ranges(x_shape[:2]), {"x": f"{x}[i0, i1, {spatial}]"},
            code, outputs, pointers=["x", *outputs], includes=includes)
    return sdfg


@expansion("CausalConvWithState")
def causal_conv_with_state(ctx: Ctx):
    """One call of ``sdflow_kernels::causal_conv_with_state`` (codegen/kernels/conv_general.h)."""
    x, w, bias, past = (ctx.connector("in", p) for p in range(4))
    y, present = ctx.connector("out", 0), ctx.connector("out", 1)
    batch, channels, length = ctx.shape(x)
    ctype = ctx.desc(x).dtype.ctype
    silu = ctx.node.attr("activation", "none") in ("silu", "swish")
    sizes = int_args((batch, channels, length, ctx.shape(w)[2]))
    code = (f"sdflow_kernels::causal_conv_with_state({ctx.ptr(x)}, {ctx.ptr(w)}, "
            f"{ctx.ptr_or_null(bias, f'const {ctype}')}, {ctx.ptr_or_null(past, f'const {ctype}')}, {ctx.ptr(y)}, "
            f"{ctx.ptr_or_null(present, ctype)}, {sizes}, "
            f"{'true' if silu else 'false'});\n")
    return ctx.tasklet(code, includes='#include "conv_general.h"\n')


@expansion("ConvTranspose")
def conv_transpose(ctx: Ctx):
    """One call of ``sdflow_kernels::conv_transpose`` (codegen/kernels/conv_general.h)."""
    x, w, b, y = (ctx.connector("in", 0), ctx.connector("in", 1), ctx.connector("in", 2), ctx.connector("out", 0))
    x_shape, w_shape = ctx.shape(x), ctx.shape(w)
    geo = conv_transpose_geometry(ctx.node, x_shape, w_shape)
    group = ctx.node.attr("group", 1)
    ctype = ctx.desc(y).dtype.ctype
    sizes = int_args((x_shape[0], x_shape[1], w_shape[1] * group, group))
    code = _pool_geometry(_window_fields(x_shape, geo)) + (
        f"sdflow_kernels::conv_transpose({ctx.ptr(x)}, {ctx.ptr(w)}, {ctx.ptr_or_null(b, f'const {ctype}')}, "
        f"{ctx.ptr(y)}, {sizes}, geometry_);\n")
    return ctx.tasklet(code, includes='#include "conv_general.h"\n')


@expansion("LRN")
def lrn(ctx: Ctx):
    """One call of ``sdflow_kernels::lrn`` (codegen/kernels/pool.h)."""
    x, y = ctx.connector("in", 0), ctx.connector("out", 0)
    shape = ctx.shape(x)
    alpha, beta, bias = (float(ctx.node.attr(a, d)) for a, d in (("alpha", 1e-4), ("beta", 0.75), ("bias", 1.0)))
    sizes = int_args((shape[0], shape[1], product(shape[2:])))
    code = (f"sdflow_kernels::lrn({ctx.ptr(x)}, {ctx.ptr(y)}, {sizes}, (int64_t){ctx.node.attr('size')}, "
            f"{alpha!r}, {beta!r}, {bias!r});\n")
    return ctx.tasklet(code, includes='#include "pool.h"\n')
