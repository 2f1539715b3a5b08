"""Weight quantization numerics: round-to-nearest (RTN) and GPTQ (Frantar et al., arXiv 2210.17323), on a
matrix W [rows, columns] whose columns are the inputs of a linear layer (rows = output channels; a MatMul weight
[K, N] is passed as W = weightᵀ). Codes are unsigned integers 0..2^bits - 1 with a scale and a zero point per row
and group of ``group_size`` columns (-1: one group of all columns): w ≈ scale * (q - zero), as ONNX's
DequantizeLinear computes it.

GPTQ, as the paper's Algorithm 1 and its reference code: H = 2 X Xᵀ from calibration inputs X [columns, samples];
dead inputs (H_ii = 0) get H_ii = 1 and zero weights; damping λ = damp * mean(diag H) on the diagonal; the upper
Cholesky factor U of H⁻¹; the columns quantized in blocks of ``block_size`` (lazy batch updates: inside a block each
column's error updates the block's remaining columns, the rest of W once per block). Each group's scale and zero
point are found when its first column comes up, from the columns as updated so far. ``act_order`` takes the
columns by decreasing H_ii; with groups, their parameters are then found up front on W in its own order (the
reference code's static groups), so that a group is still a run of consecutive inputs. ``gptq_by_column`` is the
same algorithm without the lazy updates (the test pins one against the other)."""
from __future__ import annotations

import dataclasses

import numpy as np

__all__ = ["Quantized", "group_params", "rtn", "gptq", "gptq_by_column", "hessian"]


@dataclasses.dataclass
class Quantized:
    codes: np.ndarray   # [rows, columns] integers 0..maxq
    scales: np.ndarray  # [rows, groups]
    zeros: np.ndarray   # [rows, groups] integers 0..maxq
    group_size: int     # columns per group (the last may be shorter)

    def dequantized(self) -> np.ndarray:
        g = np.arange(self.codes.shape[1]) // self.group_size
        return self.scales[:, g] * (self.codes - self.zeros[:, g])


def group_params(w: np.ndarray, bits: int, symmetric: bool) -> tuple[np.ndarray, np.ndarray]:
    """(scale, zero) per row of ``w`` [rows, columns] for codes 0..2^bits - 1: the range [min(x, 0), max(x, 0)]
    (symmetric: ±max |x|, zero in the middle); an all-zero row gets the range [-1, 1]."""
    maxq = 2 ** bits - 1
    low, high = np.minimum(w.min(axis=1), 0.0), np.maximum(w.max(axis=1), 0.0)
    if symmetric:
        high = np.maximum(-low, high)
        low = np.where(low < 0, -high, low)
    empty = (low == 0) & (high == 0)
    low, high = np.where(empty, -1.0, low), np.where(empty, 1.0, high)
    scale = (high - low) / maxq
    zero = np.full_like(scale, (maxq + 1) / 2) if symmetric else np.round(-low / scale)
    return scale, zero


def _quantize(w, scale, zero, maxq):
    """Codes of column ``w`` [rows] under per-row (scale, zero)."""
    return np.clip(np.round(w / scale) + zero, 0, maxq)


def rtn(w: np.ndarray, bits: int, group_size: int = -1, symmetric: bool = False) -> Quantized:
    """Round-to-nearest per row and group."""
    w = np.asarray(w, np.float64)
    rows, columns = w.shape
    group = columns if group_size == -1 else group_size
    maxq = 2 ** bits - 1
    codes = np.empty_like(w)
    scales, zeros = [], []
    for g0 in range(0, columns, group):
        scale, zero = group_params(w[:, g0:g0 + group], bits, symmetric)
        codes[:, g0:g0 + group] = _quantize(w[:, g0:g0 + group], scale[:, None], zero[:, None], maxq)
        scales.append(scale)
        zeros.append(zero)
    return Quantized(codes.astype(np.int64), np.stack(scales, 1), np.stack(zeros, 1).astype(np.int64), group)


def hessian(inputs: list[np.ndarray]) -> np.ndarray:
    """H = 2 X Xᵀ / n over calibration inputs (each [..., columns], rows of samples), in float64."""
    h, n = None, 0
    for x in inputs:
        x = np.asarray(x, np.float64).reshape(-1, np.shape(x)[-1])
        h = (0.0 if h is None else h) + 2.0 * x.T @ x
        n += x.shape[0]
    return h / max(n, 1)


def _prepare(w, h, damp, act_order):
    """W, the upper Cholesky factor of (damped) H⁻¹, and the column order."""
    w = np.array(w, np.float64)
    h = np.array(h, np.float64)
    dead = np.diag(h) == 0
    h[dead, dead] = 1.0
    w[:, dead] = 0.0
    order = np.argsort(-np.diag(h), kind="stable") if act_order else np.arange(w.shape[1])
    w, h = w[:, order], h[np.ix_(order, order)]
    h[np.diag_indices_from(h)] += damp * np.mean(np.diag(h))
    inverse = np.linalg.inv(np.linalg.cholesky(h))
    inverse = inverse.T @ inverse                       # H⁻¹ from its Cholesky factor
    return w, np.linalg.cholesky(inverse).T, order      # upper factor: H⁻¹ = Uᵀ U


def _static_groups(w, bits, group, symmetric):
    """(scale, zero) of each group of W in its own order, found before any column is quantized."""
    return [group_params(w[:, g0:g0 + group], bits, symmetric) for g0 in range(0, w.shape[1], group)]


def _start(w, h, bits, group_size, symmetric, act_order, damp):
    """What both forms start from: the group width, the largest code, the static groups (act-order), the
    prepared (W, U, order) and zeroed outputs (codes, each column's scale and zero point)."""
    group = np.shape(w)[1] if group_size == -1 else group_size
    static = _static_groups(np.asarray(w, np.float64), bits, group, symmetric) if act_order else None
    prepared = _prepare(w, h, damp, act_order)
    outputs = tuple(np.zeros_like(prepared[0]) for _ in range(3))
    return group, 2 ** bits - 1, static, prepared, outputs


def gptq(w: np.ndarray, h: np.ndarray, bits: int, group_size: int = -1, symmetric: bool = False,
         act_order: bool = False, damp: float = 0.01, block_size: int = 128) -> Quantized:
    """GPTQ with lazy batch updates in blocks of ``block_size`` columns (see the module)."""
    rows, columns = np.shape(w)
    group, maxq, static, (w, u, order), (codes, column_scale, column_zero) = _start(w, h, bits, group_size, symmetric,
                                                                                    act_order, damp)
    scale = zero = None
    for i1 in range(0, columns, block_size):
        i2 = min(i1 + block_size, columns)
        w1, errors = w[:, i1:i2].copy(), np.zeros((rows, i2 - i1))
        for i in range(i2 - i1):
            column = i1 + i
            if static is not None:
                scale, zero = static[order[column] // group]
            elif column % group == 0:
                # The group's columns as updated so far: those of this block in w1, later ones in w minus this
                # block's pending updates.
                end = min(column + group, columns)
                current = w1[:, i:min(end, i2) - i1]
                if end > i2:
                    later = w[:, i2:end] - errors[:, :i] @ u[i1:column, i2:end]
                    current = np.concatenate([current, later], axis=1)
                scale, zero = group_params(current, bits, symmetric)
            q = _quantize(w1[:, i], scale, zero, maxq)
            codes[:, column] = q
            column_scale[:, column], column_zero[:, column] = scale, zero
            error = (w1[:, i] - scale * (q - zero)) / u[column, column]
            w1[:, i:] -= np.outer(error, u[column, column:i2])
            errors[:, i] = error
        w[:, i2:] -= errors @ u[i1:i2, i2:]
    return _result(codes, column_scale, column_zero, order, group)


def gptq_by_column(w: np.ndarray, h: np.ndarray, bits: int, group_size: int = -1, symmetric: bool = False,
                   act_order: bool = False, damp: float = 0.01) -> Quantized:
    """The same algorithm one column at a time, every update applied to all later columns at once (no blocks)."""
    columns = np.shape(w)[1]
    group, maxq, static, (w, u, order), (codes, column_scale, column_zero) = _start(w, h, bits, group_size, symmetric,
                                                                                    act_order, damp)
    scale = zero = None
    for column in range(columns):
        if static is not None:
            scale, zero = static[order[column] // group]
        elif column % group == 0:
            scale, zero = group_params(w[:, column:column + group], bits, symmetric)
        q = _quantize(w[:, column], scale, zero, maxq)
        codes[:, column] = q
        column_scale[:, column], column_zero[:, column] = scale, zero
        error = (w[:, column] - scale * (q - zero)) / u[column, column]
        w[:, column:] -= np.outer(error, u[column, column:])
    return _result(codes, column_scale, column_zero, order, group)


def _result(codes, column_scale, column_zero, order, group) -> Quantized:
    """Back in the columns' own order, one (scale, zero) per row and group."""
    inverse = np.argsort(order)
    codes, column_scale, column_zero = codes[:, inverse], column_scale[:, inverse], column_zero[:, inverse]
    first = np.arange(0, codes.shape[1], group)
    return Quantized(codes.astype(np.int64), column_scale[:, first], column_zero[:, first].astype(np.int64), group)
