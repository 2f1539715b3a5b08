"""Lowering: IR graph -> a DaCe SDFG whose op nodes are expanded into maps, tasklets and BLAS calls."""
from __future__ import annotations

import warnings

import dace
import numpy as np

from sdflow.ir import Graph
from ._expansion import bind_static_inputs, nested_label, scalars_as_vectors
from . import attention, einsum, elementwise, fused, linalg, loss, movement, nn, quantization, reduction, remap, sampling  # noqa: F401  (register the expansions)

__all__ = ["lower", "expand", "bind_static_inputs", "nested_label"]


def lower(graph: Graph) -> tuple[dace.SDFG, dict[str, np.ndarray]]:
    """A copy of ``graph`` ready for DaCe codegen, and the weights to pass as arguments (not baked into code)."""
    graph = graph.copy()
    bind_static_inputs(graph)
    sdfg = graph.sdfg
    weights = {}
    for name in list(sdfg.constants_prop):
        _, value = sdfg.constants_prop.pop(name)
        weights[name] = np.asarray(value, order="C")
    sdfg.arg_names = list(graph.inputs) + list(graph.outputs)
    scalars_as_vectors(sdfg)
    return sdfg, weights


def expand(sdfg: dace.SDFG, instrument: bool = False) -> None:
    """Expands every op node (recursively) and simplifies the result. With ``instrument``, every op stays its
    own nested SDFG (named after the op) whose states DaCe times, instead of being inlined."""
    with warnings.catch_warnings():
        # DaCe's own ExpandTransformation passes connector sets; the order does not matter to us.
        warnings.filterwarnings("ignore", message="Using sets for connectors")
        sdfg.expand_library_nodes(recursive=True)
    if instrument:
        for node in sdfg.start_state.nodes():
            if isinstance(node, dace.nodes.NestedSDFG):
                for state in node.sdfg.states():
                    state.instrument = dace.InstrumentationType.Timer
    else:
        sdfg.simplify()
    sdfg.validate()
