"""Cleanup passes (level O1): constant folding, shape-input folding, dead-node elimination."""
from . import eliminate_dead_nodes, fold_constants, fold_shape_inputs  # noqa: F401  (register the passes)
