"""sdflow: ONNX models lowered to DaCe SDFGs, optimised by named passes, compiled to native code."""
from sdflow.ir.errors import (CompileError, InputError, ModelLoadError, PipelineError, SdflowError,
                              ShapeInferenceError, UnsupportedOpError, VerificationError)

__version__ = "0.1.0"
DEFAULT_PASSES = "O2"  # the pipeline of sdflow.compile and of the CLI when -p is not given (O1 + fusion)
__all__ = ["compile", "load", "optimize", "CompiledModel", "ValueSpecializedModel", "PartitionedModel", "FallbackModel",
           "KernelOptions", "DEFAULT_PASSES",
           "SdflowError", "ModelLoadError", "UnsupportedOpError",
           "ShapeInferenceError", "VerificationError", "PipelineError", "CompileError", "InputError"]


def __getattr__(name):
    # The driver imports DaCe and every layer; load it on first use so `import sdflow` stays cheap.
    if name in ("compile", "load", "optimize", "CompiledModel", "ValueSpecializedModel", "PartitionedModel",
                "FallbackModel"):
        from sdflow import api
        return getattr(api, name)
    if name == "KernelOptions":
        from sdflow.codegen.options import KernelOptions
        return KernelOptions
    raise AttributeError(f"module 'sdflow' has no attribute {name!r}")
