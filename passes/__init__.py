"""Passes over the IR: the pass contract, the registry, pipelines and levels, and the passes themselves."""
from . import cleanup, fusion, quantization  # noqa: F401  (registers the passes)
from .infra import Pass, PassContext, PassResult, available_passes, create_pass, register_pass
from .pipeline import LEVELS, PassRecord, parse_pipeline, run_pipeline

__all__ = ["Pass", "PassContext", "PassResult", "available_passes", "create_pass", "register_pass", "LEVELS",
           "PassRecord", "parse_pipeline", "run_pipeline"]
