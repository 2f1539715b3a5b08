"""Attention and RotaryEmbedding: calls of codegen/kernels/attention.h with their geometry."""
from __future__ import annotations

import math

from sdflow.ir.ops.attention import attention_dims
from sdflow.ir.types import TensorType
from ._expansion import Ctx, cexpr, expansion, int_args


def _ttype(ctx: Ctx, connector) -> TensorType | None:
    if connector is None:
        return None
    desc = ctx.desc(connector)
    return TensorType(desc.dtype.as_numpy_dtype(), list(desc.shape))


def _mask_strides(mask_shape) -> list[str]:
    """The mask's strides along (batch, head, query, key): right-aligned against them, 0 where it broadcasts."""
    shape = [1] * (4 - len(mask_shape)) + list(mask_shape)
    strides, stride = [], "1"
    for dim in reversed(shape):
        strides.append("0" if dim == 1 else stride)
        stride = f"({stride} * {cexpr(dim)})"
    return strides[::-1]


@expansion("Attention")
def attention(ctx: Ctx):
    """One call of ``sdflow_kernels::attention`` or, for float32 without a cache, valid lengths, QK output or
    softcap, ``sdflow_kernels::attention_float`` (codegen/kernels/attention.h)."""
    q, k, v, mask, past_k, past_v, nonpad = (ctx.connector("in", p) for p in range(7))
    y, present_k, present_v, qk = (ctx.connector("out", p) for p in range(4))
    node = ctx.node
    d = attention_dims(node, _ttype(ctx, q), _ttype(ctx, k), _ttype(ctx, v), _ttype(ctx, past_k))
    dtype = ctx.desc(q).dtype.ctype
    scale = node.attr("scale")
    scale = 1 / math.sqrt(int(d.head_size)) if scale is None else scale
    softcap = float(node.attr("softcap", 0.0) or 0.0)
    left, right = node.attr("left_window_size", -1), node.attr("right_window_size", -1)
    mask_strides, mask_keys = (_mask_strides(ctx.shape(mask)), cexpr(ctx.shape(mask)[-1])) if mask is not None \
        else (["0"] * 4, "0")
    dims = ", ".join(f"(int64_t)({cexpr(x)})" for x in (d.batch, d.q_heads, d.kv_heads, d.q_len, d.kv_len,
                                                         d.past_len, d.head_size, d.v_head_size))
    fields = [dims, "true" if d.three_d else "false", repr(float(scale)), repr(softcap),
              "true" if node.attr("is_causal", 0) else "false",
              str(left if left is not None and left >= 0 else -1),
              str(right if right is not None and right >= 0 else -1),
              str(node.attr("qk_matmul_output_mode", 0)), f"{{{', '.join(mask_strides)}}}", f"(int64_t)({mask_keys})",
              "true" if node.attr("nan_probabilities_to_zero", 0) else "false"]
    code = f"const sdflow_kernels::AttentionGeometry geometry_{{{', '.join(fields)}}};\n"
    mask_ptr = ctx.ptr_or_null(mask, "const float")
    # float32 without a cache has its own kernel, which accumulates in float; the general one in double.
    fast = dtype == "float" and past_k is None and nonpad is None and qk is None and present_k is None \
        and present_v is None and softcap == 0
    if fast:
        code += (f"sdflow_kernels::attention_float({ctx.ptr(q)}, {ctx.ptr(k)}, {ctx.ptr(v)}, {mask_ptr}, "
                 f"{ctx.ptr(y)}, geometry_);\n")
    else:
        code += (f"sdflow_kernels::attention({ctx.ptr(q)}, {ctx.ptr(k)}, {ctx.ptr(v)}, {mask_ptr}, "
                 f"{ctx.ptr_or_null(past_k, f'const {dtype}')}, {ctx.ptr_or_null(past_v, f'const {dtype}')}, "
                 f"{ctx.ptr_or_null(nonpad, 'const int64_t')}, {ctx.ptr(y)}, {ctx.ptr_or_null(present_k, dtype)}, "
                 f"{ctx.ptr_or_null(present_v, dtype)}, {ctx.ptr_or_null(qk, dtype)}, geometry_);\n")
    return ctx.tasklet(code, includes='#include "attention.h"\n')


@expansion("RotaryEmbedding")
def rotary_embedding(ctx: Ctx):
    """One call of ``sdflow_kernels::rotary_embedding`` (codegen/kernels/attention.h)."""
    x, cos, sin, positions, y = (ctx.connector("in", 0), ctx.connector("in", 1), ctx.connector("in", 2),
                                 ctx.connector("in", 3), ctx.connector("out", 0))
    shape = ctx.shape(x)
    if len(shape) == 4:
        batch, heads, seq, head_size = shape
    else:
        heads = ctx.node.attr("num_heads")
        batch, seq, head_size = shape[0], shape[1], shape[2] // heads
    rotary = ctx.node.attr("rotary_embedding_dim", 0) or head_size
    geometry = ", ".join([int_args((batch, heads, seq, head_size, rotary)),
                          "true" if len(shape) == 4 else "false",
                          "true" if ctx.node.attr("interleaved", 0) else "false"])
    code = (f"const sdflow_kernels::RotaryGeometry geometry_{{{geometry}}};\n"
            f"sdflow_kernels::rotary_embedding({ctx.ptr(x)}, {ctx.ptr(cos)}, {ctx.ptr(sin)}, "
            f"{ctx.ptr_or_null(positions, 'const int64_t')}, {ctx.ptr(y)}, geometry_);\n")
    return ctx.tasklet(code, includes='#include "attention.h"\n')
