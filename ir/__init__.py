"""sdflow's IR: op nodes (DaCe library nodes with ONNX semantics) over a one-state SDFG."""
from . import ops  # noqa: F401  (registers the op set)
from .errors import (CompileError, InputError, ModelLoadError, PipelineError, SdflowError, ShapeInferenceError,
                     UnsupportedOpError, VerificationError)
from .graph import Graph
from .nodes import OpNode
from .printer import print_graph
from .registry import MIN_OPSET, lookup_op, registered_ops
from .semantics import dim_assumptions, evaluate_node, infer_node, interpret, known_values, semantics_of
from .types import TensorType
from .verifier import op_span, read_between_states, verify, verify_buffer_sharing

__all__ = ["Graph", "OpNode", "TensorType", "print_graph", "verify", "verify_buffer_sharing", "op_span", "read_between_states", "lookup_op",
           "registered_ops", "MIN_OPSET",
           "infer_node", "evaluate_node", "interpret", "dim_assumptions", "known_values", "semantics_of", "SdflowError", "ModelLoadError",
           "UnsupportedOpError", "ShapeInferenceError", "VerificationError", "PipelineError", "CompileError",
           "InputError"]
