"""Every (op, version) of ONNX's default domain from opset 7 to the current one is either implemented or refused on
purpose with a reason (ir.registry.REFUSED). Models below MIN_OPSET are converted up to it on import, so an op
version below it counts as covered by the spec at MIN_OPSET."""
from __future__ import annotations

import onnx
import pytest

import sdflow  # noqa: F401  (registers the ops)
from sdflow.ir import MIN_OPSET, UnsupportedOpError, lookup_op
from sdflow.frontends.onnx.decompose import DECOMPOSED
from sdflow.ir.registry import REFUSED, refusal_reason

# Folded into graph constants (Constant) or rewritten into other ops (decompose.py) by the importer.
FRONTEND_OPS = {"Constant", *(op for domain, op in DECOMPOSED if domain == "")}


def _history() -> dict[str, list[int]]:
    versions: dict[str, list[int]] = {}
    for schema in onnx.defs.get_all_schemas_with_history():
        if schema.domain == "" and not schema.deprecated:
            versions.setdefault(schema.name, []).append(schema.since_version)
    return versions


def _has_function(op_type: str, opset: int) -> bool:
    """ONNX defines the op as a function of other ops at this opset: the loader inlines it
    (frontends/onnx/loader.inline_schema_functions)."""
    schema = onnx.defs.get_schema(op_type, opset, "")
    return any(v <= opset for v in [*schema.function_opset_versions, *schema.context_dependent_function_opset_versions])


def _uncovered() -> list[str]:
    current = onnx.defs.onnx_opset_version()
    gaps = []
    for op_type, versions in sorted(_history().items()):
        if op_type in FRONTEND_OPS:
            continue
        for opset in range(max(7, min(versions)), current + 1):
            effective = max(opset, MIN_OPSET)
            if lookup_op("", op_type, effective) is None and refusal_reason("", op_type, effective) is None \
                    and not _has_function(op_type, effective):
                gaps.append(f"{op_type} at opset {opset}")
                break
    return gaps


def test_every_op_version_is_implemented_or_refused_with_a_reason():
    assert _uncovered() == []


def test_refusals_are_not_stale():
    """An op refused for every version must really have no spec (else the refusal hides a working op)."""
    for op_type, (reason, until) in REFUSED.items():
        assert reason
        if until is None:
            assert all(lookup_op("", op_type, opset) is None for opset in range(MIN_OPSET, 29)), op_type


def test_old_batch_normalization_versions_import():
    """BatchNormalization v9/v14 (every opset <= 14 model: PaddleOCR, ResNet-50 exports) has a spec."""
    for opset in (13, 14, 15):
        assert lookup_op("", "BatchNormalization", opset) is not None


def test_unsupported_op_error_gives_the_reason():
    message = str(UnsupportedOpError({("", "SequenceMap", 17): ["map_1"]}))
    assert "SequenceMap" in message and "control flow" in message and "'map_1'" in message
