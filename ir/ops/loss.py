"""Loss ops that inference graphs still carry (evaluation, distillation): NegativeLogLikelihoodLoss and
SoftmaxCrossEntropyLoss. Class axis 1; targets of ``ignore_index`` count with weight 0."""
from __future__ import annotations

import numpy as np

from ..errors import ShapeInferenceError
from ..types import TensorType
from ._base import Op, op

__all__ = ["nll_reference"]

_REDUCTIONS = ("none", "sum", "mean")


def _loss_type(node, scores: TensorType, target: TensorType) -> TensorType:
    reduction = node.attr("reduction", "mean")
    if reduction not in _REDUCTIONS:
        raise ShapeInferenceError(f"{node.op_type}: unknown reduction {reduction!r}")
    if scores.rank < 2 or target.rank != scores.rank - 1:
        raise ShapeInferenceError(f"{node.op_type}: scores {scores} and target {target} do not fit [N, C, ...]")
    return TensorType(scores.dtype, [scores.shape[0], *scores.shape[2:]] if reduction == "none" else [])


def nll_reference(node, log_prob, target, weight=None):
    target = target.astype(np.int64)
    ignore = node.attr("ignore_index")
    valid = np.ones(target.shape, bool) if ignore is None else target != ignore
    safe = np.where(valid, target, 0)
    picked = np.take_along_axis(log_prob.astype(np.float64), np.expand_dims(safe, 1), axis=1)[:, 0]
    weights = (np.ones(target.shape) if weight is None else weight.astype(np.float64)[safe]) * valid
    loss = -picked * weights
    reduction = node.attr("reduction", "mean")
    if reduction == "sum":
        loss = loss.sum()
    elif reduction == "mean":
        with np.errstate(divide="ignore", invalid="ignore"):
            loss = loss.sum() / weights.sum()
    return np.asarray(loss).astype(log_prob.dtype)


@op("NegativeLogLikelihoodLoss", since=13)
class NegativeLogLikelihoodLoss(Op):
    @classmethod
    def infer(cls, node, inputs, values):
        return [_loss_type(node, inputs[0], inputs[1])]

    @classmethod
    def reference(cls, node, x, target, weight=None):
        return [nll_reference(node, x, target, weight)]


@op("SoftmaxCrossEntropyLoss", since=13)
class SoftmaxCrossEntropyLoss(Op):
    @classmethod
    def infer(cls, node, inputs, values):
        return [_loss_type(node, inputs[0], inputs[1]), TensorType(inputs[0].dtype, inputs[0].shape)]

    @classmethod
    def reference(cls, node, scores, labels, weights=None):
        x = scores.astype(np.float64)
        shifted = x - x.max(axis=1, keepdims=True)
        log_prob = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
        return [nll_reference(node, log_prob, labels, weights).astype(scores.dtype), log_prob.astype(scores.dtype)]
