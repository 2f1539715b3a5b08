"""Contractions: MatMul (numpy semantics, batched with broadcasting) and Gemm."""
from __future__ import annotations

import numpy as np

from ..errors import ShapeInferenceError
from ..types import TensorType
from ._base import Op, broadcast_shapes, op

__all__ = ["matmul_shapes"]


def matmul_shapes(a_shape, b_shape):
    """(batch shape, M, K, N, output shape) of numpy-style matmul; 1-D operands are promoted and dropped."""
    if not a_shape or not b_shape:
        raise ShapeInferenceError("MatMul: operands must have rank >= 1")
    a = (1, ) + tuple(a_shape) if len(a_shape) == 1 else tuple(a_shape)
    b = tuple(b_shape) + (1, ) if len(b_shape) == 1 else tuple(b_shape)
    if a[-1] != b[-2] and isinstance(a[-1], int) and isinstance(b[-2], int):
        raise ShapeInferenceError(f"MatMul: inner dimensions differ ({list(a_shape)} x {list(b_shape)})")
    batch = broadcast_shapes(a[:-2], b[:-2])
    out = list(batch) + ([a[-2]] if len(a_shape) > 1 else []) + ([b[-1]] if len(b_shape) > 1 else [])
    return batch, a[-2], a[-1], b[-1], out


@op("MatMul", since=13)
class MatMul(Op):
    @classmethod
    def infer(cls, node, inputs, values):
        a, b = inputs
        if a.dtype != b.dtype:
            raise ShapeInferenceError(f"MatMul: element types differ ({a.dtype} vs {b.dtype})")
        return [TensorType(a.dtype, matmul_shapes(a.shape, b.shape)[4])]

    @classmethod
    def reference(cls, node, a, b):
        return [np.matmul(a, b)]


@op("Gemm", since=13)
class Gemm(Op):
    @classmethod
    def infer(cls, node, inputs, values):
        a, b = inputs[0], inputs[1]
        if a.rank != 2 or b.rank != 2:
            raise ShapeInferenceError("Gemm: A and B must be 2-D")
        m = a.shape[1] if node.attr("transA", 0) else a.shape[0]
        n = b.shape[0] if node.attr("transB", 0) else b.shape[1]
        if len(inputs) > 2 and inputs[2] is not None:
            broadcast_shapes((m, n), inputs[2].shape)
        return [TensorType(a.dtype, [m, n])]

    @classmethod
    def reference(cls, node, a, b, c=None):
        a = a.T if node.attr("transA", 0) else a
        b = b.T if node.attr("transB", 0) else b
        y = node.attr("alpha", 1.0) * (a.astype(np.float64) @ b.astype(np.float64))
        if c is not None:
            y = y + node.attr("beta", 1.0) * c
        return [y.astype(a.dtype)]


@op("Det", since=11)
class Det(Op):
    """Determinants of the square matrices in the last two dims."""

    @classmethod
    def infer(cls, node, inputs, values):
        x = inputs[0]
        if x.rank < 2 or x.shape[-1] != x.shape[-2]:
            raise ShapeInferenceError(f"Det needs [..., M, M] matrices, got {x}")
        if x.dtype.kind != "f":
            raise ShapeInferenceError(f"Det: {x.dtype} inputs are not supported (floating point only)")
        return [TensorType(x.dtype, x.shape[:-2])]

    @classmethod
    def reference(cls, node, x):
        return [np.asarray(np.linalg.det(x.astype(np.float64))).astype(x.dtype)]
