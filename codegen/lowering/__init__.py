"""Lowering: IR graph -> a DaCe SDFG whose op nodes are expanded into maps, tasklets and BLAS calls."""
from __future__ import annotations

import warnings

import dace
import numpy as np

from sdflow.ir import Graph, known_values, semantics_of
from . import elementwise, linalg, movement, nn, reduction  # noqa: F401  (register the expansions)

__all__ = ["lower", "expand", "bind_static_inputs"]


def bind_static_inputs(graph: Graph) -> int:
    """Records on every node the compile-time values of its shape-like inputs (what expansions read).
    Returns how many inputs were bound."""
    values = known_values(graph)
    bound = 0
    for node in graph.op_nodes():
        inputs = graph.node_inputs(node)
        semantics = semantics_of(node)
        for position in semantics.value_inputs + semantics.optional_value_inputs:
            if position < len(inputs) and inputs[position] in values and node.static_input(position) is None:
                node.set_static_input(position, values[inputs[position]])
                bound += 1
    return bound


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
    _scalars_as_vectors(sdfg)
    return sdfg, weights


def _scalars_as_vectors(sdfg: dace.SDFG) -> None:
    """Rank-0 tensors become shape [1]: DaCe maps cannot propagate memlets of rank-0 arrays. Same memory,
    so callers still pass rank-0 numpy arrays."""
    scalars = set()
    for name, desc in sdfg.arrays.items():
        if not desc.shape:
            sdfg.arrays[name] = dace.data.Array(desc.dtype, [1], transient=desc.transient)
            scalars.add(name)
    for edge in sdfg.start_state.edges():
        if edge.data.data in scalars:
            edge.data = dace.Memlet.from_array(edge.data.data, sdfg.arrays[edge.data.data])


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
