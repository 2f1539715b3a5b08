"""Lowering: IR graph -> a DaCe SDFG whose op nodes are expanded into maps, tasklets and BLAS calls."""
from __future__ import annotations

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
        for position in semantics_of(node).value_inputs:
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
        weights[name] = np.ascontiguousarray(value)
    sdfg.arg_names = list(graph.inputs) + list(graph.outputs)
    return sdfg, weights


def expand(sdfg: dace.SDFG) -> None:
    """Expands every op node (recursively) and simplifies the result."""
    sdfg.expand_library_nodes(recursive=True)
    sdfg.simplify()
    sdfg.validate()
