"""Einsum: the equation parsed into one letter per operand dim (an ellipsis becomes letters of its own)."""
from __future__ import annotations

import dataclasses
import string

import numpy as np

from ..errors import ShapeInferenceError
from ..types import TensorType
from ._base import Op, op

__all__ = ["EinsumPlan", "einsum_plan"]


@dataclasses.dataclass(frozen=True)
class EinsumPlan:
    operands: list[str]  # letters per operand dim
    output: str
    extents: dict  # letter -> size (the largest over operands: size-1 dims broadcast)

    @property
    def contracted(self) -> str:
        return "".join(sorted(set("".join(self.operands)) - set(self.output)))


def einsum_plan(equation: str, shapes) -> EinsumPlan:
    equation = equation.replace(" ", "")
    inputs, arrow, output = equation.partition("->")
    terms = inputs.split(",")
    if len(terms) != len(shapes):
        raise ShapeInferenceError(f"Einsum: {equation!r} names {len(terms)} operands, {len(shapes)} given")
    spare = [c for c in string.ascii_uppercase + string.ascii_lowercase if c not in equation]
    ellipsis_rank = max((len(s) - len(t.replace("...", "")) for t, s in zip(terms, shapes) if "..." in t), default=0)
    ellipsis = "".join(spare[:ellipsis_rank])
    operands = []
    for term, shape in zip(terms, shapes):
        if "..." in term:
            own = len(shape) - len(term.replace("...", ""))
            term = term.replace("...", ellipsis[ellipsis_rank - own:])
        if len(term) != len(shape):
            raise ShapeInferenceError(f"Einsum: term {term!r} does not fit a rank-{len(shape)} operand")
        operands.append(term)
    if not arrow:  # implicit output: the ellipsis, then the letters used once, in alphabetical order
        counts = "".join(operands)
        output = ellipsis + "".join(sorted(c for c in set(counts) if counts.count(c) == 1 and c not in ellipsis))
    else:
        output = output.replace("...", ellipsis)
    extents = {}
    for term, shape in zip(operands, shapes):
        for letter, dim in zip(term, shape):
            if extents.get(letter, 1) == 1:
                extents[letter] = dim
            elif dim != 1 and dim != extents[letter] and isinstance(dim, int) and isinstance(extents[letter], int):
                raise ShapeInferenceError(f"Einsum: {letter!r} has sizes {extents[letter]} and {dim}")
    return EinsumPlan(operands, output, extents)


@op("Einsum", since=12)
class Einsum(Op):
    @classmethod
    def infer(cls, node, inputs, values):
        plan = einsum_plan(node.attr("equation"), [t.shape for t in inputs])
        return [TensorType(inputs[0].dtype, [plan.extents[c] for c in plan.output])]

    @classmethod
    def reference(cls, node, *operands):
        return [np.asarray(np.einsum(node.attr("equation").replace(" ", ""), *operands)).astype(operands[0].dtype)]
