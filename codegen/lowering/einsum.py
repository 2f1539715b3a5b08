"""Einsum as one parallel map over the output whose tasklet loops over the contracted letters and multiplies the
operands read through pointers (a size-1 dim broadcasts: its index is 0)."""
from __future__ import annotations

from sdflow.ir.ops.einsum import einsum_plan
from ._expansion import Ctx, add_map, cexpr, contiguous_strides, expansion


@expansion("Einsum")
def einsum(ctx: Ctx):
    connectors = [ctx.connector("in", p) for p in range(len(ctx.node.onnx_inputs))]
    terms = ctx.node.attr("equation").replace(" ", "").partition("->")[0].split(",")
    # Lowering stores rank-0 tensors as shape [1]; an operand whose term is empty is a scalar.
    shapes = [[] if term == "" else ctx.shape(c) for term, c in zip(terms, connectors)]
    plan = einsum_plan(ctx.node.attr("equation"), shapes)
    target = ctx.connector("out", 0)
    variable = {c: f"i{k}" for k, c in enumerate(plan.output)}
    variable.update({c: f"c{k}_" for k, c in enumerate(plan.contracted)})
    factors = []
    for k, (term, shape) in enumerate(zip(plan.operands, shapes)):
        strides = contiguous_strides(shape)
        offset = " + ".join(f"{'0' if dim == 1 else variable[letter]} * {cexpr(stride)}"
                            for letter, dim, stride in zip(term, shape, strides)) or "0"
        factors.append(f"(double)a{k}[{offset}]")
    loops = "".join(f"for (int64_t {variable[c]} = 0; {variable[c]} < {cexpr(plan.extents[c])}; ++{variable[c]}) "
                    for c in plan.contracted)
    code = f"double acc_ = 0; {loops}{{ acc_ += {' * '.join(factors)}; }} y = acc_;"
    inputs = {f"a{k}": f"{c}[{', '.join(f'0:{d}' for d in ctx.shape(c))}]" for k, c in enumerate(connectors)}
    out_index = ", ".join(f"i{k}" for k in range(len(plan.output))) or "0"
    sdfg, state = ctx.nested()
    add_map(state, "einsum", {f"i{k}": plan.extents[c] for k, c in enumerate(plan.output)}, inputs, code,
            {"y": f"{target}[{out_index}]"}, pointers=list(inputs))
    return sdfg
