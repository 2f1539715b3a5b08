"""NegativeLogLikelihoodLoss and SoftmaxCrossEntropyLoss: one call of codegen/kernels/loss.h."""
from __future__ import annotations

from ._expansion import Ctx, expansion, int_args, product


@expansion("NegativeLogLikelihoodLoss", "SoftmaxCrossEntropyLoss")
def loss(ctx: Ctx):
    """One call of ``sdflow_kernels::loss`` (codegen/kernels/loss.h)."""
    scores, target, weight = (ctx.connector("in", p) for p in range(3))
    out, log_prob = ctx.connector("out", 0), ctx.connector("out", 1)
    shape = ctx.shape(scores)
    dtype = ctx.desc(scores).dtype.ctype
    ignore = ctx.node.attr("ignore_index")
    reduction = ctx.node.attr("reduction", "mean")
    sizes = int_args((shape[0], shape[1], product(shape[2:])))
    weight_ptr, log_ptr = ctx.ptr_or_null(weight, f"const {dtype}"), ctx.ptr_or_null(log_prob, dtype)
    code = (f"sdflow_kernels::loss({ctx.ptr(scores)}, {ctx.ptr(target)}, {weight_ptr}, {ctx.ptr(out)}, {log_ptr}, "
            f"{sizes}, {'true' if ctx.node.op_type == 'SoftmaxCrossEntropyLoss' else 'false'}, "
            f"{'false' if ignore is None else 'true'}, (int64_t){int(ignore or 0)}, "
            f"sdflow_kernels::LossReduction::{reduction});\n")
    return ctx.tasklet(code, includes='#include "loss.h"\n')
