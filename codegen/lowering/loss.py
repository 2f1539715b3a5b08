"""NegativeLogLikelihoodLoss and SoftmaxCrossEntropyLoss as one sequential C++ loop (loss heads are small next to
the networks that feed them), accumulating in double."""
from __future__ import annotations

from ._expansion import Ctx, cexpr, expansion, product


@expansion("NegativeLogLikelihoodLoss", "SoftmaxCrossEntropyLoss")
def loss(ctx: Ctx):
    scores, target, weight = (ctx.connector("in", p) for p in range(3))
    out, log_prob = ctx.connector("out", 0), ctx.connector("out", 1)
    shape = ctx.shape(scores)
    rows, classes, inner = cexpr(shape[0]), cexpr(shape[1]), cexpr(product(shape[2:]))
    dtype = ctx.desc(scores).dtype.ctype
    x, t, y = ctx.ptr(scores), ctx.ptr(target), ctx.ptr(out)
    ignore = ctx.node.attr("ignore_index")
    reduction = ctx.node.attr("reduction", "mean")
    softmax = ctx.node.op_type == "SoftmaxCrossEntropyLoss"
    # Per (row, inner position): the log-probability of class c is x - shift_ (0 for NLL, whose input already
    # is one; max + log-sum-exp over the classes for softmax cross-entropy).
    shift = ""
    if softmax:
        shift = f"""
double m_ = -INFINITY;
for (int64_t c_ = 0; c_ < C_; ++c_) m_ = std::max(m_, (double){x}[(n_ * C_ + c_) * D_ + d_]);
double s_ = 0;
for (int64_t c_ = 0; c_ < C_; ++c_) s_ += std::exp((double){x}[(n_ * C_ + c_) * D_ + d_] - m_);
shift_ = m_ + std::log(s_);"""
        if log_prob:
            shift += f"""
for (int64_t c_ = 0; c_ < C_; ++c_)
    {ctx.ptr(log_prob)}[(n_ * C_ + c_) * D_ + d_] = ({dtype})({x}[(n_ * C_ + c_) * D_ + d_] - shift_);"""
    valid = "true" if ignore is None else f"t_ != {int(ignore)}"
    code = f"""
const int64_t N_ = {rows}, C_ = {classes}, D_ = {inner};
double total_ = 0, weights_ = 0;
for (int64_t n_ = 0; n_ < N_; ++n_) for (int64_t d_ = 0; d_ < D_; ++d_) {{
    double shift_ = 0;{shift}
    const int64_t t_ = (int64_t){t}[n_ * D_ + d_];
    double w_ = 0, l_ = 0;
    if ({valid}) {{
        w_ = {f"(double){ctx.ptr(weight)}[t_]" if weight else "1.0"};
        l_ = -((double){x}[(n_ * C_ + t_) * D_ + d_] - shift_) * w_;
    }}
    {f"{y}[n_ * D_ + d_] = ({dtype})l_;" if reduction == "none" else ""}
    total_ += l_;
    weights_ += w_;
}}
{f"{y}[0] = ({dtype})total_;" if reduction == "sum" else ""}{f"{y}[0] = ({dtype})(total_ / weights_);" if reduction == "mean" else ""}
"""
    return ctx.tasklet(code)
