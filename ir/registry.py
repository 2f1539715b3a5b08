"""Op registry: which op spec implements (domain, op_type) at a given opset."""
from __future__ import annotations

import dataclasses

__all__ = ["OpSpec", "register_op", "lookup_op", "registered_ops", "MIN_OPSET", "REFUSED", "refusal_reason"]

# Default-domain opset the IR is written against; older models are converted up to it on import.
MIN_OPSET = 13


@dataclasses.dataclass(frozen=True)
class OpSpec:
    """One registered op: its opset range, node class and semantics (shape inference + numpy reference)."""

    domain: str
    op_type: str
    since: int
    until: int | None  # inclusive; None = still current
    semantics: type  # an ir.ops._base.Op subclass
    node_class: type  # the generated dace LibraryNode subclass

    def covers(self, opset: int) -> bool:
        return self.since <= opset and (self.until is None or opset <= self.until)


_REGISTRY: dict[tuple[str, str], list[OpSpec]] = {}


def register_op(spec: OpSpec) -> None:
    _REGISTRY.setdefault((spec.domain, spec.op_type), []).append(spec)


def lookup_op(domain: str, op_type: str, opset: int) -> OpSpec | None:
    for spec in _REGISTRY.get((domain, op_type), []):
        if spec.covers(opset):
            return spec
    return None


def registered_ops() -> list[OpSpec]:
    return [spec for specs in _REGISTRY.values() for spec in specs]


# Default-domain ops (and opset ranges) sdflow refuses on purpose, with the reason an error shows. Every other
# (op, version) of onnx.defs from MIN_OPSET on must have an OpSpec (tests/ir/test_op_coverage.py checks it).
_NOT_YET = "not implemented yet"
_CONTROL_FLOW = "control flow over sequences is not lowered to SDFG states (If, Loop and Scan over tensors are)"
_SEQUENCE = "sequence and optional values are not IR tensors"
_STRINGS = "string tensors have no native element type"
_RANDOM = "random sampling has no reproducible reference (ONNX Runtime's generator is its own)"
_DATA_DEPENDENT = ("its output shape depends on input values: no IR op, sdflow.compile runs it between compiled parts "
                   "(sdflow.PartitionedModel)")
_SIGNAL = "signal-processing ops are not implemented yet"
REFUSED: dict[str, tuple[str, int | None]] = {  # op_type -> (reason, refused up to this opset; None = all)
    "SequenceMap": (_CONTROL_FLOW, None),
    **{op: (_SEQUENCE, None) for op in ("ConcatFromSequence", "SequenceAt", "SequenceConstruct", "SequenceEmpty",
                                         "SequenceErase", "SequenceInsert", "SequenceLength", "SplitToSequence",
                                         "Optional", "OptionalGetElement", "OptionalHasElement")},
    **{op: (_STRINGS, None) for op in ("RegexFullMatch", "StringConcat", "StringNormalizer", "StringSplit",
                                        "TfIdfVectorizer")},
    **{op: (_RANDOM, None) for op in ("Bernoulli", "Multinomial", "RandomNormal", "RandomNormalLike",
                                       "RandomUniform", "RandomUniformLike")},
    **{op: (_DATA_DEPENDENT, None) for op in ("NonZero", "Unique", "NonMaxSuppression")},
    **{op: (_SIGNAL, None) for op in ("DFT", "STFT", "MelWeightMatrix")},
    "ImageDecoder": ("encoded images are not tensors", None),
    "GroupNormalization": ("opset 18-20 scale and bias per group (deprecated by opset 21's per channel)", 20),
    "Scatter": ("deprecated since opset 11 (ScatterElements)", None),
    "Upsample": ("deprecated since opset 10 (Resize)", None),
    **{op: (_NOT_YET, None) for op in ("Col2Im", "DeformConv",
                                       "MaxRoiPool", "MaxUnpool",
                                       "TensorScatter")},
}


def refusal_reason(domain: str, op_type: str, opset: int) -> str | None:
    """Why sdflow refuses ``op_type`` at ``opset`` on purpose, or None."""
    if domain not in ("", "ai.onnx") or op_type not in REFUSED:
        return None
    reason, until = REFUSED[op_type]
    return reason if until is None or opset <= until else None
