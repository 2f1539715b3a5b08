"""MatMul and Gemm through BLAS (OpenBLAS cblas_?gemm), with numpy batch broadcasting."""
from __future__ import annotations

from dace.libraries.blas.environments.openblas import OpenBLAS

from sdflow.ir.ops.linalg import matmul_shapes
from ._expansion import Ctx, cexpr, contiguous_strides, expansion, product

_GEMM = {"float": "cblas_sgemm", "double": "cblas_dgemm"}


def _gemm_call(ctype, trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc) -> str:
    if ctype in _GEMM:
        flag = {False: "CblasNoTrans", True: "CblasTrans"}
        return (f"{_GEMM[ctype]}(CblasRowMajor, {flag[trans_a]}, {flag[trans_b]}, {m}, {n}, {k}, ({ctype}){alpha}, "
                f"{a}, {lda}, {b}, {ldb}, ({ctype}){beta}, {c}, {ldc});")
    # Integer contractions have no BLAS; a plain loop nest (rare in models).
    a_at = f"{a}[(p) * {lda} + (i)]" if trans_a else f"{a}[(i) * {lda} + (p)]"
    b_at = f"{b}[(j) * {ldb} + (p)]" if trans_b else f"{b}[(p) * {ldb} + (j)]"
    return (f"for (int64_t i = 0; i < {m}; ++i) for (int64_t j = 0; j < {n}; ++j) {{ {ctype} acc = 0; "
            f"for (int64_t p = 0; p < {k}; ++p) acc += {a_at} * {b_at}; "
            f"{c}[i * {ldc} + j] = ({ctype}){alpha} * acc + ({ctype}){beta} * {c}[i * {ldc} + j]; }}")


@expansion("MatMul", environments=[OpenBLAS])
def matmul(ctx: Ctx):
    a, b, y = ctx.connector("in", 0), ctx.connector("in", 1), ctx.connector("out", 0)
    a_shape, b_shape = ctx.shape(a), ctx.shape(b)
    ctype = ctx.desc(y).dtype.ctype
    a, b, y = ctx.ptr(a), ctx.ptr(b), ctx.ptr(y)
    batch, m, k, n, _ = matmul_shapes(a_shape, b_shape)
    m_c, k_c, n_c = cexpr(m), cexpr(k), cexpr(n)
    if len(b_shape) <= 2:
        # B is one matrix: every batch of A is one tall GEMM.
        rows = cexpr(product(list(a_shape[:-1])) if len(a_shape) > 1 else 1)
        return ctx.tasklet(_gemm_call(ctype, False, False, rows, n_c, k_c, 1, a, k_c, b, n_c, 0, y, n_c))
    a_batch = [1] * (len(batch) - max(len(a_shape) - 2, 0)) + list(a_shape[:-2])
    b_batch = [1] * (len(batch) - (len(b_shape) - 2)) + list(b_shape[:-2])
    a_strides, b_strides = contiguous_strides(a_batch), contiguous_strides(b_batch)
    lines = [f"for (int64_t t = 0; t < {cexpr(product(batch))}; ++t) {{", "int64_t rest = t, ao = 0, bo = 0;"]
    for axis in reversed(range(len(batch))):
        lines.append(f"{{ int64_t index = rest % {cexpr(batch[axis])}; rest /= {cexpr(batch[axis])};")
        if a_batch[axis] != 1:
            lines.append(f"ao += index * {cexpr(a_strides[axis])};")
        if b_batch[axis] != 1:
            lines.append(f"bo += index * {cexpr(b_strides[axis])};")
        lines.append("}")
    lines.append(_gemm_call(ctype, False, False, m_c, n_c, k_c, 1, f"{a} + ao * {m_c} * {k_c}", k_c,
                            f"{b} + bo * {k_c} * {n_c}", n_c, 0, f"{y} + t * {m_c} * {n_c}", n_c))
    lines.append("}")
    return ctx.tasklet("\n".join(lines))


@expansion("Gemm", environments=[OpenBLAS])
def gemm(ctx: Ctx):
    a, b, c, y = (ctx.connector("in", 0), ctx.connector("in", 1), ctx.connector("in", 2),
                  ctx.connector("out", 0))
    trans_a, trans_b = bool(ctx.node.attr("transA", 0)), bool(ctx.node.attr("transB", 0))
    m, n = (cexpr(d) for d in ctx.shape(y))
    a_shape = ctx.shape(a)
    k = cexpr(a_shape[0] if trans_a else a_shape[1])
    ctype = ctx.desc(y).dtype.ctype
    c_shape = [1] * (2 - len(ctx.shape(c))) + ctx.shape(c) if c is not None else None
    a, b, y = ctx.ptr(a), ctx.ptr(b), ctx.ptr(y)
    c = ctx.ptr(c) if c is not None else None
    alpha, beta = repr(float(ctx.node.attr("alpha", 1.0))), repr(float(ctx.node.attr("beta", 1.0)))
    code = ""
    gemm_beta = 0
    if c is not None:
        rows = "i" if c_shape[0] != 1 else "0"
        cols = "j" if c_shape[1] != 1 else "0"
        code = (f"for (int64_t i = 0; i < {m}; ++i) for (int64_t j = 0; j < {n}; ++j) "
                f"{y}[i * {n} + j] = ({ctype}){beta} * {c}[{rows} * {cexpr(c_shape[1])} + {cols}];\n")
        gemm_beta = 1
    code += _gemm_call(ctype, trans_a, trans_b, m, n, k, alpha, a, m if trans_a else k, b, k if trans_b else n,
                       gemm_beta, y, n)
    return ctx.tasklet(code)
