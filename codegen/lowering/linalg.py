"""MatMul and Gemm, with numpy batch broadcasting: float32 through ``codegen/kernels/gemm.h`` (constant weights
packed once by ``packing.prepack_gemm``, others packed per call), double through BLAS (OpenBLAS cblas_dgemm),
integer and 16-bit types through a plain loop nest."""
from __future__ import annotations

from dace.libraries.blas.environments.openblas import OpenBLAS

from sdflow.ir.ops.linalg import matmul_shapes
from ._expansion import Ctx, cexpr, contiguous_strides, expansion, product

GEMM_INCLUDES = '#include "gemm.h"'
PACKED = "packed_gemm"  # the connector of a node's packed constant B (added by packing.prepack_gemm)


def uses_gemm_h(ctx: Ctx, ctype: str) -> bool:
    """float32 products run gemm.h unless the selection step chose BLAS for the node (the option gemm=blas)."""
    return ctype == "float" and ctx.node.implementation != "blas"


def sgemm_call(m, n, k, a, lda, b, ldb, c, ldc, trans_b=False, packed=None, alpha=1.0, accumulate=False) -> str:
    """One call of gemm.h for float32: C (ldc) = alpha * A (lda) . B (+ C when ``accumulate``); B from its packed
    copy ``packed`` when given (then ``b``/``ldb`` are unused), else packed per call from ``b`` (ldb; ``trans_b``:
    given as its transpose)."""
    epilogue = f"sdflow_kernels::gemm::Epilogue{{{float(alpha)!r}f, {'true' if accumulate else 'false'}, nullptr}}"
    if packed is not None:
        return f"sdflow_kernels::gemm::gemm_packed({m}, {n}, {k}, {a}, {lda}, {packed}, {c}, {ldc}, {epilogue});"
    return (f"sdflow_kernels::gemm::gemm({m}, {n}, {k}, {a}, {lda}, {b}, {ldb}, {'true' if trans_b else 'false'}, "
            f"{c}, {ldc}, {epilogue});")

_GEMV = {"float": "cblas_sgemv", "double": "cblas_dgemv"}
_GEMM = {"float": "cblas_sgemm", "double": "cblas_dgemm"}


def _gemm_call(ctype, trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc) -> str:
    if ctype in _GEMM:
        flag = {False: "CblasNoTrans", True: "CblasTrans"}
        gemm = (f"{_GEMM[ctype]}(CblasRowMajor, {flag[trans_a]}, {flag[trans_b]}, {m}, {n}, {k}, ({ctype}){alpha}, "
                f"{a}, {lda}, {b}, {ldb}, ({ctype}){beta}, {c}, {ldc});")
        # One row (a batch-1 classifier head): GEMV streams the matrix once; OpenBLAS's GEMM packs it first
        # (MobileNetV2's 1280x1000 head: 0.39 ms as GEMM, ONNX Runtime 0.15 ms).
        rows, cols = (n, k) if trans_b else (k, n)
        gemv = (f"{_GEMV[ctype]}(CblasRowMajor, {flag[not trans_b]}, {rows}, {cols}, ({ctype}){alpha}, {b}, {ldb}, "
                f"{a}, {lda if trans_a else 1}, ({ctype}){beta}, {c}, 1);")
        return f"if (({m}) == 1 && ({n}) > 0 && ({k}) > 0) {{ {gemv} }} else {{ {gemm} }}"
    # Integer and float16 contractions have no BLAS: gemm.h's plain loops (rare in models); float16 and bfloat16
    # accumulate in float, as numpy does.
    acc = "float" if ctype in ("dace::float16", "dace::bfloat16") else ctype
    return (f"sdflow_kernels::gemm::gemm_loops<{ctype}, {acc}>({'true' if trans_a else 'false'}, "
            f"{'true' if trans_b else 'false'}, {m}, {n}, {k}, ({acc}){alpha}, {a}, {lda}, {b}, {ldb}, ({acc}){beta}, "
            f"{c}, {ldc});")


@expansion("MatMul", environments=[OpenBLAS])
def matmul(ctx: Ctx):
    a_in, b_in, y = ctx.connector("in", 0), ctx.connector("in", 1), ctx.connector("out", 0)
    a_shape, b_shape = ctx.shape(a_in), ctx.shape(b_in)
    ctype = ctx.desc(y).dtype.ctype
    a, b, y = ctx.ptr(a_in), ctx.ptr(b_in), ctx.ptr(y)
    batch, m, k, n, _ = matmul_shapes(a_shape, b_shape)
    m_c, k_c, n_c = cexpr(m), cexpr(k), cexpr(n)
    ours = uses_gemm_h(ctx, ctype)
    if len(b_shape) <= 2:
        # B is one matrix: every batch of A is one tall GEMM.
        rows = cexpr(product(list(a_shape[:-1])) if len(a_shape) > 1 else 1)
        if ours and PACKED in ctx.inputs:
            return ctx.tasklet(sgemm_call(rows, n_c, k_c, a, k_c, None, None, y, n_c, packed=ctx.ptr(PACKED)),
                               includes=GEMM_INCLUDES, unread=(b_in,))
        if ours:
            return ctx.tasklet(sgemm_call(rows, n_c, k_c, a, k_c, b, n_c, y, n_c), includes=GEMM_INCLUDES)
        return ctx.tasklet(_gemm_call(ctype, False, False, rows, n_c, k_c, 1, a, k_c, b, n_c, 0, y, n_c),
                           includes=GEMM_INCLUDES)
    offsets = _batch_offsets(batch, a_shape, b_shape)
    if ours:
        # Items in parallel (attention's heads), each packing its B in its thread.
        return ctx.tasklet(f"sdflow_kernels::gemm::gemm_batched({cexpr(product(batch))}, {m_c}, {n_c}, {k_c}, {a}, "
                           f"{k_c}, {b}, {n_c}, false, {y}, {n_c}, [&](int64_t t_, int64_t& ao_, int64_t& bo_, "
                           f"int64_t& co_) {{\n{offsets}\nao_ *= {m_c} * {k_c}; bo_ *= {k_c} * {n_c}; "
                           f"co_ = t_ * {m_c} * {n_c};\n}});", includes=GEMM_INCLUDES)
    lines = [f"for (int64_t t_ = 0; t_ < {cexpr(product(batch))}; ++t_) {{", "int64_t ao_ = 0, bo_ = 0;", offsets]
    lines.append(_gemm_call(ctype, False, False, m_c, n_c, k_c, 1, f"{a} + ao_ * {m_c} * {k_c}", k_c,
                            f"{b} + bo_ * {k_c} * {n_c}", n_c, 0, f"{y} + t_ * {m_c} * {n_c}", n_c))
    lines.append("}")
    return ctx.tasklet("\n".join(lines), includes=GEMM_INCLUDES)


def _batch_offsets(batch, a_shape, b_shape) -> str:
    """C++ that sets ao_ and bo_ (declared by the caller, zero) to the matrix indices of A and B that batch item t_
    reads, broadcasting as numpy does."""
    a_batch = [1] * (len(batch) - max(len(a_shape) - 2, 0)) + list(a_shape[:-2])
    b_batch = [1] * (len(batch) - (len(b_shape) - 2)) + list(b_shape[:-2])
    a_strides, b_strides = contiguous_strides(a_batch), contiguous_strides(b_batch)
    # Every C++ local ends with '_': symbol names never do (ir.types.make_symbol).
    lines = ["int64_t rest_ = t_;"]
    for axis in reversed(range(len(batch))):
        lines.append(f"{{ int64_t index_ = rest_ % {cexpr(batch[axis])}; rest_ /= {cexpr(batch[axis])};")
        if a_batch[axis] != 1:
            lines.append(f"ao_ += index_ * {cexpr(a_strides[axis])};")
        if b_batch[axis] != 1:
            lines.append(f"bo_ += index_ * {cexpr(b_strides[axis])};")
        lines.append("}")
    return "\n".join(lines)


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
    b_in = b
    a, b, y = ctx.ptr(a), ctx.ptr(b), ctx.ptr(y)
    c = ctx.ptr(c) if c is not None else None
    alpha, beta = repr(float(ctx.node.attr("alpha", 1.0))), repr(float(ctx.node.attr("beta", 1.0)))
    code = ""
    gemm_beta = 0
    if c is not None:
        code = (f"sdflow_kernels::gemm::fill_scaled({y}, (int64_t)({m}), (int64_t)({n}), {c}, "
                f"(int64_t)({cexpr(c_shape[0])}), (int64_t)({cexpr(c_shape[1])}), ({ctype}){beta});\n")
        gemm_beta = 1
    if uses_gemm_h(ctx, ctype) and not trans_a:
        packed = ctx.ptr(PACKED) if PACKED in ctx.inputs else None
        code += sgemm_call(m, n, k, a, k, b, k if trans_b else n, y, n, trans_b=trans_b, packed=packed,
                           alpha=float(ctx.node.attr("alpha", 1.0)), accumulate=bool(gemm_beta))
        return ctx.tasklet(code, includes=GEMM_INCLUDES, unread=(b_in,) if packed else ())
    code += _gemm_call(ctype, trans_a, trans_b, m, n, k, alpha, a, m if trans_a else k, b, k if trans_b else n,
                       gemm_beta, y, n)
    return ctx.tasklet(code, includes=GEMM_INCLUDES)


@expansion("Det")
def det(ctx: Ctx):
    """One call of ``sdflow_kernels::det`` (codegen/kernels/det.h): LU with partial pivoting per matrix."""
    x, y = ctx.ptr(ctx.connector("in", 0)), ctx.ptr(ctx.connector("out", 0))
    shape = ctx.shape(ctx.connector("in", 0))
    return ctx.tasklet(f"sdflow_kernels::det({x}, {cexpr(product(shape[:-2]))}, {cexpr(shape[-1])}, {y});",
                       includes='#include "det.h"')
