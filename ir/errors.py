"""The one exception hierarchy of sdflow (re-exported as ``sdflow.SdflowError`` and friends)."""
from .registry import refusal_reason

__all__ = [
    "SdflowError", "ModelLoadError", "UnsupportedOpError", "ShapeInferenceError", "VerificationError",
    "PipelineError", "CompileError", "InputError",
]


class SdflowError(Exception):
    """Base class of every error sdflow raises on purpose."""


class ModelLoadError(SdflowError):
    """The model file is missing, truncated, malformed, or fails the ONNX checker."""


class UnsupportedOpError(SdflowError):
    """One or more nodes have no sdflow op; ``unsupported`` maps (domain, op_type, opset) to node names."""

    def __init__(self, unsupported: dict[tuple[str, str, int], list[str]]):
        self.unsupported = unsupported
        parts = []
        for (domain, op_type, opset), names in sorted(unsupported.items()):
            shown = ", ".join(repr(n) for n in names[:5]) + (f" (+{len(names) - 5} more)" if len(names) > 5 else "")
            reason = refusal_reason(domain, op_type, opset)
            parts.append(f"{domain or 'ai.onnx'}::{op_type} (opset {opset}{': ' + reason if reason else ''}) "
                         f"at node(s) {shown}")
        super().__init__(f"{len(unsupported)} unsupported op(s): " + "; ".join(parts))


class ShapeInferenceError(SdflowError):
    """An op's output type cannot be inferred (bad attributes, mismatched shapes, value-dependent shapes)."""


class VerificationError(SdflowError):
    """The IR graph breaks an invariant (checked after import and after every pass)."""


class PipelineError(SdflowError):
    """A pass pipeline spec is malformed, names an unknown pass or option, or a pass failed."""


class CompileError(SdflowError):
    """Lowering or building native code failed."""


class InputError(SdflowError):
    """A compiled model was called with a missing, extra or mistyped input."""
