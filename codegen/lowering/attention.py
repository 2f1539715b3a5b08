"""Attention as one parallel map over (batch, query head, query row): each row computes its scores against every
key (past cache first), the additive bias (mask, causal, window, valid KV length), a softmax that gives a fully
masked row zeros, and the weighted sum of values; the first head of each KV group also writes the present cache.
Mirrors the ONNX reference (onnx.reference.ops.op_attention) step for step."""
from __future__ import annotations

import math

from sdflow.ir.ops.attention import attention_dims
from sdflow.ir.types import TensorType
from ._expansion import Ctx, add_map, cexpr, expansion
from ._math import EXP_FLOAT


def _ttype(ctx: Ctx, connector) -> TensorType | None:
    if connector is None:
        return None
    desc = ctx.desc(connector)
    return TensorType(desc.dtype.as_numpy_dtype(), list(desc.shape))


def _mask_offset(mask_shape) -> str:
    """Offset into a mask right-aligned against (b, h, i, j), broadcasting its size-1 dims."""
    names = ["b", "h", "i", "j"][4 - len(mask_shape):]
    terms, stride = [], "1"
    for name, dim in reversed(list(zip(names, mask_shape))):
        if dim != 1:
            terms.append(f"{name} * {stride}")
        stride = f"({stride} * {cexpr(dim)})"
    return " + ".join(terms) or "0"


@expansion("Attention")
def attention(ctx: Ctx):
    q, k, v, mask, past_k, past_v, nonpad = (ctx.connector("in", p) for p in range(7))
    y, present_k, present_v, qk = (ctx.connector("out", p) for p in range(4))
    node = ctx.node
    d = attention_dims(node, _ttype(ctx, q), _ttype(ctx, k), _ttype(ctx, v), _ttype(ctx, past_k))
    dtype = ctx.desc(q).dtype.ctype
    hq, hkv, sq, skv, past, head, vhead = (cexpr(x) for x in (d.q_heads, d.kv_heads, d.q_len, d.kv_len, d.past_len,
                                                             d.head_size, d.v_head_size))
    total = f"({past} + {skv})"

    def element(name, heads, length, size, b, h, s, e):
        if d.three_d:  # [batch, seq, heads * size]
            return f"{name}[(({b}) * {length} + ({s})) * ({heads} * {size}) + ({h}) * {size} + ({e})]"
        return f"{name}[((({b}) * {heads} + ({h})) * {length} + ({s})) * {size} + ({e})]"

    def cached(name, past_name, size, b, h, j, e):  # key/value j of the concatenated past + new sequence
        new = element(name, hkv, skv, size, b, h, f"{j} - {past}", e)
        if past_k is None:
            return new
        return f"({j} < {past} ? {past_name}[((({b}) * {hkv} + ({h})) * {past} + ({j})) * {size} + ({e})] : {new})"

    scale = node.attr("scale")
    scale = 1 / math.sqrt(int(d.head_size)) if scale is None else scale
    softcap = float(node.attr("softcap", 0.0) or 0.0)
    mode = node.attr("qk_matmul_output_mode", 0)
    if past_k is not None:
        offset = past
    elif nonpad is not None:
        offset = f"((int64_t)nonpad[b] - {sq})"
    else:
        offset = "0"
    # float32 without a cache has its own kernel, which accumulates in float; the general one in double.
    fast = dtype == "float" and past_k is None and nonpad is None and qk is None and present_k is None \
        and present_v is None and softcap == 0
    acc = "float" if fast else "double"
    bias = []
    if mask is not None:
        mask_shape = ctx.shape(mask)
        value = f"(mask[moff_] ? ({acc})0 : -INFINITY)" if ctx.desc(mask).dtype.ctype == "bool" else \
            f"({acc})mask[moff_]"
        bias.append(f"if (j < {cexpr(mask_shape[-1])}) {{ const int64_t moff_ = {_mask_offset(mask_shape)}; "
                    f"b_ += {value}; }} else b_ = -INFINITY;")
    if node.attr("is_causal", 0):
        bias.append(f"if (j > i + {offset}) b_ = -INFINITY;")
    left, right = node.attr("left_window_size", -1), node.attr("right_window_size", -1)
    if left is not None and left >= 0:
        bias.append(f"if ((i + {offset}) - j > {left}) b_ = -INFINITY;")
    if right is not None and right >= 0:
        bias.append(f"if (j - (i + {offset}) > {right}) b_ = -INFINITY;")
    if nonpad is not None:
        bias.append("if (j >= (int64_t)nonpad[b]) b_ = -INFINITY;")
    if fast:
        return _float_attention(ctx, d, scale, bias, element)
    qk_at = f"qk[(((b * {hq} + h) * {sq} + i) * {total}) + j]"
    capped = f"score_ = {softcap!r} * std::tanh(score_ / {softcap!r});" if softcap > 0 else ""
    write_qk = ""
    if qk is not None and mode in (0, 1):
        write_qk = f"{qk_at} = ({dtype})score_;"
    elif qk is not None and mode == 2:
        write_qk = f"{qk_at} = ({dtype})(score_ + b_);"
    presents = ""
    if present_k is not None or present_v is not None:
        rows = []
        for out, target, name, past_name, size in ((present_k, "presentk", "K", "pastk", head),
                                                   (present_v, "presentv", "V", "pastv", vhead)):
            if out is not None:
                rows.append(f"for (int64_t e = 0; e < {size}; ++e) {target}[((b * {hkv} + g_) * {total} + j) * {size}"
                            f" + e] = {cached(name, past_name, size, 'b', 'g_', 'j', 'e')};")
        presents = (f"if (i == 0 && h % group_ == 0) for (int64_t j = 0; j < {total}; ++j) {{ "
                    + " ".join(rows) + " }")
    y_at = element("Y", hq, sq, vhead, "b", "h", "i", "e")
    code = f"""
const int64_t b = i0, h = i1, i = i2, T_ = {total}, group_ = {hq} / {hkv}, g_ = h / group_;
std::vector<double> s_(T_);
double bmax_ = -INFINITY;
for (int64_t j = 0; j < T_; ++j) {{
    // Rounded to the element type where the reference rounds (Q and K each scaled by sqrt(scale), the scores,
    // the biased scores, the probabilities): for float16 that decides the last bits.
    double score_ = 0;
    for (int64_t e = 0; e < {head}; ++e)
        score_ += (double)({dtype})({element("Q", hq, sq, head, "b", "h", "i", "e")} * ({dtype}){math.sqrt(scale)!r}) *
                  (double)({dtype})({cached("K", "pastk", head, "b", "g_", "j", "e")} * ({dtype}){math.sqrt(scale)!r});
    score_ = (double)({dtype})score_;
    {capped}
    double b_ = 0;
    {" ".join(bias)}
    {write_qk}
    bmax_ = std::max(bmax_, b_);
    s_[j] = (double)({dtype})(score_ + b_);
}}
double m_ = -INFINITY;
for (int64_t j = 0; j < T_; ++j) m_ = std::max(m_, s_[j]);
double sum_ = 0;
const bool masked_ = std::isinf(bmax_) && bmax_ < 0;  // no key may be attended: probabilities 0
for (int64_t j = 0; j < T_; ++j) {{ s_[j] = (masked_ || std::isinf(m_)) ? 0.0 : std::exp(s_[j] - m_); sum_ += s_[j]; }}
for (int64_t j = 0; j < T_; ++j) {{ s_[j] = sum_ > 0 ? (double)({dtype})(s_[j] / sum_) : 0.0; {f"{qk_at} = ({dtype})s_[j];" if qk is not None and mode == 3 else ""} }}
for (int64_t e = 0; e < {vhead}; ++e) {{
    double acc_ = 0;
    for (int64_t j = 0; j < T_; ++j) acc_ += s_[j] * (double){cached("V", "pastv", vhead, "b", "g_", "j", "e")};
    {y_at} = ({dtype})acc_;
}}
{presents}
"""
    inputs = {"Q": q, "K": k, "V": v, "mask": mask, "pastk": past_k, "pastv": past_v, "nonpad": nonpad}
    outputs = {"Y": y, "qk": qk, "presentk": present_k, "presentv": present_v}
    whole = {name: f"{c}[{', '.join(f'0:{s}' for s in ctx.shape(c))}]" for name, c in {**inputs, **outputs}.items()
             if c is not None}
    sdfg, state = ctx.nested()
    add_map(state, "attention", {"i0": d.batch, "i1": d.q_heads, "i2": d.q_len},
            {n: m for n, m in whole.items() if n in inputs}, code, {n: m for n, m in whole.items() if n not in inputs},
            pointers=list(whole))
    return sdfg


def _float_attention(ctx: Ctx, d, scale: float, bias: list[str], element) -> object:
    """The float32 path without a cache, one (batch, head) per map iteration, four query rows at a time. Kᵀ
    (scaled) is copied once into a local [head size, keys] tile padded to whole vectors of 16 keys, so a block of
    scores is 4 x 16 accumulators that stay in registers while the head dimension streams by; the probabilities
    then weight V's rows into 4 x 16 output accumulators the same way. Scores live in a 4-row buffer: nothing of
    size queries x keys is written to memory."""
    q, k, v, mask = (ctx.connector("in", p) for p in range(4))
    y = ctx.connector("out", 0)
    hq, hkv, sq, skv, head, vhead = (cexpr(x) for x in (d.q_heads, d.kv_heads, d.q_len, d.kv_len, d.head_size,
                                                       d.v_head_size))
    row = {name: element(name, heads, length, size, b, h, s, "0")
           for name, heads, length, size, b, h, s in (("Q", hq, sq, head, "b", "h", "i"),
                                                      ("K", hkv, skv, head, "b", "g_", "j"),
                                                      ("V", hkv, skv, vhead, "b", "g_", "j"),
                                                      ("Y", hq, sq, vhead, "b", "h", "i"))}
    code = f"""
{EXP_FLOAT}
const int64_t b = i0, h = i1, SQ_ = {sq}, T_ = {skv}, D_ = {head}, DV_ = {vhead}, g_ = h / ({hq} / {hkv});
const int64_t TP_ = (T_ + 15) / 16 * 16;  // keys padded to whole vectors
std::vector<float> kt_(D_ * TP_, 0.0f), s_(4 * TP_);
for (int64_t j = 0; j < T_; ++j) {{
    const float* k_ = &{row["K"]};
    for (int64_t e = 0; e < D_; ++e) kt_[e * TP_ + j] = k_[e] * {scale!r}f;
}}
for (int64_t i0_ = 0; i0_ < SQ_; i0_ += 4) {{
    // Rows past the end repeat the last row: the same values are computed and written twice.
    const float* q_[4];
    float* y_[4];
    int64_t rows_[4];
    for (int64_t r_ = 0; r_ < 4; ++r_) {{
        const int64_t i = std::min<int64_t>(i0_ + r_, SQ_ - 1);
        rows_[r_] = i;
        q_[r_] = &{row["Q"]};
        y_[r_] = &{row["Y"]};
    }}
    for (int64_t jc_ = 0; jc_ < TP_; jc_ += 16) {{
        float a0_[16] = {{}}, a1_[16] = {{}}, a2_[16] = {{}}, a3_[16] = {{}};
        for (int64_t e = 0; e < D_; ++e) {{
            const float* kr_ = kt_.data() + e * TP_ + jc_;
            const float q0_ = q_[0][e], q1_ = q_[1][e], q2_ = q_[2][e], q3_ = q_[3][e];
            #pragma omp simd
            for (int64_t l_ = 0; l_ < 16; ++l_) {{
                a0_[l_] += q0_ * kr_[l_]; a1_[l_] += q1_ * kr_[l_]; a2_[l_] += q2_ * kr_[l_]; a3_[l_] += q3_ * kr_[l_];
            }}
        }}
        for (int64_t l_ = 0; l_ < 16; ++l_) {{
            s_[jc_ + l_] = a0_[l_]; s_[TP_ + jc_ + l_] = a1_[l_]; s_[2 * TP_ + jc_ + l_] = a2_[l_];
            s_[3 * TP_ + jc_ + l_] = a3_[l_];
        }}
    }}
    for (int64_t r_ = 0; r_ < 4; ++r_) {{
        const int64_t i = rows_[r_];
        float* sr_ = s_.data() + r_ * TP_;
        float m_ = -INFINITY;
        for (int64_t j = 0; j < T_; ++j) {{
            float b_ = 0.0f;
            {" ".join(bias)}
            sr_[j] += b_;
            m_ = std::max(m_, sr_[j]);
        }}
        if (std::isinf(m_) && m_ < 0) {{  // no key may be attended: the probabilities are 0
            for (int64_t j = 0; j < TP_; ++j) sr_[j] = 0.0f;
            continue;
        }}
        float sum_ = 0.0f;
        #pragma omp simd reduction(+:sum_)
        for (int64_t j = 0; j < T_; ++j) {{ const float p_ = exp_f_(sr_[j] - m_); sr_[j] = p_; sum_ += p_; }}
        const float inv_ = 1.0f / sum_;
        #pragma omp simd
        for (int64_t j = 0; j < T_; ++j) sr_[j] *= inv_;
    }}
    int64_t ec_ = 0;
    for (; ec_ + 16 <= DV_; ec_ += 16) {{
        float a0_[16] = {{}}, a1_[16] = {{}}, a2_[16] = {{}}, a3_[16] = {{}};
        for (int64_t j = 0; j < T_; ++j) {{
            const float* vr_ = &{row["V"]} + ec_;
            const float p0_ = s_[j], p1_ = s_[TP_ + j], p2_ = s_[2 * TP_ + j], p3_ = s_[3 * TP_ + j];
            #pragma omp simd
            for (int64_t l_ = 0; l_ < 16; ++l_) {{
                a0_[l_] += p0_ * vr_[l_]; a1_[l_] += p1_ * vr_[l_]; a2_[l_] += p2_ * vr_[l_]; a3_[l_] += p3_ * vr_[l_];
            }}
        }}
        for (int64_t l_ = 0; l_ < 16; ++l_) {{
            y_[0][ec_ + l_] = a0_[l_]; y_[1][ec_ + l_] = a1_[l_]; y_[2][ec_ + l_] = a2_[l_]; y_[3][ec_ + l_] = a3_[l_];
        }}
    }}
    for (; ec_ < DV_; ++ec_)
        for (int64_t r_ = 0; r_ < 4; ++r_) {{
            float acc_ = 0.0f;
            for (int64_t j = 0; j < T_; ++j) {{ const float* vr_ = &{row["V"]}; acc_ += s_[r_ * TP_ + j] * vr_[ec_]; }}
            y_[r_][ec_] = acc_;
        }}
}}
"""
    inputs = {"Q": q, "K": k, "V": v, "mask": mask}
    whole = {name: f"{c}[{', '.join(f'0:{s}' for s in ctx.shape(c))}]" for name, c in {**inputs, "Y": y}.items()
             if c is not None}
    sdfg, state = ctx.nested()
    add_map(state, "attention", {"i0": d.batch, "i1": d.q_heads}, {n: m for n, m in whole.items() if n != "Y"},
            code, {"Y": whole["Y"]}, pointers=list(whole))
    return sdfg


@expansion("RotaryEmbedding")
def rotary_embedding(ctx: Ctx):
    x, cos, sin, positions, y = (ctx.connector("in", 0), ctx.connector("in", 1), ctx.connector("in", 2),
                                 ctx.connector("in", 3), ctx.connector("out", 0))
    shape = ctx.shape(x)
    if len(shape) == 4:
        batch, heads, seq, head_size = shape
        offset = "((b_ * H_ + h_) * S_ + s_) * D_"
    else:
        heads = ctx.node.attr("num_heads")
        batch, seq, head_size = shape[0], shape[1], shape[2] // heads
        offset = "((b_ * S_ + s_) * H_ + h_) * D_"
    rotary = ctx.node.attr("rotary_embedding_dim", 0) or head_size
    ctype = ctx.desc(x).dtype.ctype
    acc = "double" if ctype == "double" else "float"
    row = f"{ctx.ptr(positions)}[b_ * S_ + s_] * HALF_" if positions else "(b_ * S_ + s_) * HALF_"
    if ctx.node.attr("interleaved", 0):
        first, second = "2 * i_", "2 * i_ + 1"
    else:
        first, second = "i_", "i_ + HALF_"
    code = f"""
const int64_t B_ = {cexpr(batch)}, H_ = {cexpr(heads)}, S_ = {cexpr(seq)}, D_ = {cexpr(head_size)};
const int64_t R_ = {cexpr(rotary)}, HALF_ = R_ / 2;
#pragma omp parallel for collapse(3)
for (int64_t b_ = 0; b_ < B_; ++b_)
  for (int64_t s_ = 0; s_ < S_; ++s_)
    for (int64_t h_ = 0; h_ < H_; ++h_) {{
      const {ctype}* in_ = {ctx.ptr(x)} + {offset};
      {ctype}* out_ = {ctx.ptr(y)} + {offset};
      const int64_t row_ = {row};
      for (int64_t i_ = 0; i_ < HALF_; ++i_) {{
        const {acc} c_ = {ctx.ptr(cos)}[row_ + i_], n_ = {ctx.ptr(sin)}[row_ + i_];
        const {acc} x1_ = in_[{first}], x2_ = in_[{second}];
        out_[{first}] = ({ctype})(({ctype})(c_ * x1_) - ({ctype})(n_ * x2_));
        out_[{second}] = ({ctype})(({ctype})(n_ * x1_) + ({ctype})(c_ * x2_));
      }}
      for (int64_t d_ = R_; d_ < D_; ++d_) out_[d_] = in_[d_];
    }}
"""
    return ctx.tasklet(code)
