"""Codegen: lowering op nodes to DaCe maps/tasklets/BLAS calls, native builds (cached), the runtime callable."""
from .build import TARGETS, build
from .cache import cache_root
from .runtime import CompiledModel, Outputs

__all__ = ["build", "TARGETS", "cache_root", "CompiledModel", "Outputs"]
