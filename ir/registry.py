"""Op registry: which op spec implements (domain, op_type) at a given opset."""
from __future__ import annotations

import dataclasses

__all__ = ["OpSpec", "register_op", "lookup_op", "registered_ops", "MIN_OPSET"]

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
