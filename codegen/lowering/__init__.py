"""Lowering: IR graph -> a DaCe SDFG whose op nodes are expanded into maps, tasklets and BLAS calls."""
from __future__ import annotations

import warnings

import dace
import numpy as np
import sympy

from sdflow.ir import Graph, OpNode
from sdflow.passes import PassContext
from sdflow.passes.cleanup.eliminate_dead_nodes import EliminateDeadNodes
from sdflow.passes.cleanup.fold_shape_inputs import FoldShapeInputs
from ._expansion import bind_static_inputs, nested_label, scalars_as_vectors
from .packing import prepack, weight_value
from . import (attention, control, einsum, elementwise, fused, linalg, loss, movement, nn, quantization,  # noqa: F401
               recurrent, reduction, remap, sampling)  # (register the expansions)
from .control import hoist_branch_constants

__all__ = ["lower", "weight_value", "expand", "hoist_branch_constants", "expand_op_nodes", "bind_static_inputs",
           "nested_label", "becomes_view"]


def lower(graph: Graph) -> tuple[dace.SDFG, dict[str, np.ndarray]]:
    """A copy of ``graph`` ready for DaCe codegen, and the weights to pass as arguments (not baked into code)."""
    graph = graph.copy()
    hoist_branch_constants(graph)  # before the weights are taken from the constants
    # Kernels read shape-like inputs as compile-time values: record them, drop the tensors that only carried them
    # and the ops that computed them (O0 keeps both; DaCe's dead-dataflow pass would half-remove those kernels).
    FoldShapeInputs().apply(graph, PassContext())
    EliminateDeadNodes().apply(graph, PassContext())
    _drop_unread_outputs(graph)
    bind_static_inputs(graph)
    _rename_connectors_named_like_symbols(graph)
    sdfg = graph.sdfg
    weights = {}
    for name in list(sdfg.constants_prop):
        _, value = sdfg.constants_prop.pop(name)
        weights[name] = np.asarray(value, order="C")
    prepack(graph, weights)
    sdfg.arg_names = list(graph.inputs) + list(graph.outputs)
    scalars_as_vectors(sdfg)
    for desc in sdfg.arrays.values():
        # Strides read back from JSON can be products ordered differently from those computed from the shape,
        # which DaCe compares structurally against the expansions' own arrays: a strided Conv over symbolic
        # H, W (strides like (4*floor(h/2 - 1/2) + 4)*(floor(w/2 - 1/2) + 1)) failed to build. Recompute them.
        if type(desc) is dace.data.Array:
            desc.set_shape(desc.shape)
    _reshapes_as_views(graph)
    return sdfg, weights


def _drop_unread_outputs(graph: Graph) -> None:
    """Outputs of an op that nothing reads (an LSTM's Y_c, TopK's indices) are not computed: their tensors and
    connectors go, and the expansions see the output as absent. DaCe's dead-dataflow pass would otherwise try to
    remove the writes itself and fails on symbolic sizes ("cannot determine truth value of 24*batch > 1")."""
    state, keep = graph.state, set(graph.outputs)
    for access in list(state.data_nodes()):
        if access.data in keep or state.out_degree(access) or not graph.sdfg.arrays[access.data].transient:
            continue
        for edge in list(state.in_edges(access)):
            producer = edge.src
            if isinstance(producer, OpNode) and len([c for c in producer.onnx_outputs if c]) > 1:
                state.remove_edge(edge)
                producer.remove_out_connector(edge.src_conn)
                if not state.in_degree(access):
                    state.remove_node(access)
                    graph.sdfg.remove_data(access.data, validate=False)


def _rename_connectors_named_like_symbols(graph: Graph) -> None:
    """An op's connectors name the arrays of its expansion, where the model's dims are symbols too: MatMul's input
    ``B`` beside a batch dim named ``B`` would be one name for two things. Such connectors become ``port_B``."""
    symbols, state = set(graph.sdfg.symbols), graph.state
    for node in graph.op_nodes():
        for name in [c for c in node.onnx_inputs if c in symbols]:
            for edge in list(state.in_edges_by_connector(node, name)):
                state.remove_edge(edge)
                state.add_edge(edge.src, edge.src_conn, node, f"port_{name}", edge.data)
            node.remove_in_connector(name)
            node.add_in_connector(f"port_{name}")
            node.onnx_inputs = [f"port_{c}" if c == name else c for c in node.onnx_inputs]
        for name in [c for c in node.onnx_outputs if c in symbols]:
            for edge in list(state.out_edges_by_connector(node, name)):
                state.remove_edge(edge)
                state.add_edge(node, f"port_{name}", edge.dst, edge.dst_conn, edge.data)
            node.remove_out_connector(name)
            node.add_out_connector(f"port_{name}")
            node.onnx_outputs = [f"port_{c}" if c == name else c for c in node.onnx_outputs]


_VIEWS = ("Reshape", "Flatten", "Squeeze", "Unsqueeze")
_DATA_TYPES = (dace.float32, dace.float64, dace.float16)


def becomes_view(graph: Graph, node) -> bool:
    """Whether lowering turns ``node`` into a DaCe view: a reshape between two intermediate data tensors whose
    shape is known at compile time (graph inputs and outputs keep their own buffers; a shape computed at run time
    would leave its producer writing a tensor nobody reads; shape arithmetic is tiny and keeps its copies)."""
    if node.op_type not in _VIEWS or node.domain_name or sum(1 for t in graph.node_inputs(node) if t) != 1:
        return False
    source, target = graph.node_inputs(node)[0], graph.node_outputs(node)[0]
    arrays = graph.sdfg.arrays
    return target is not None and arrays[source].transient and arrays[target].transient \
        and arrays[source].dtype in _DATA_TYPES


def _reshapes_as_views(graph: Graph) -> None:
    """Every reshape that ``becomes_view`` is replaced by a view of its input (the same buffer, indexed with the
    new shape) instead of a copy."""
    sdfg, state = graph.sdfg, graph.state
    for node in graph.op_nodes():
        if not becomes_view(graph, node):
            continue
        source, target = graph.node_inputs(node)[0], graph.node_outputs(node)[0]
        source_access = next(e.src for e in state.in_edges(node) if e.data.data == source)
        target_access = next(e.dst for e in state.out_edges(node))
        for edge in state.all_edges(node):
            state.remove_edge(edge)
        state.remove_node(node)
        desc = sdfg.arrays[target]
        sdfg.arrays[target] = dace.data.ArrayView(desc.dtype, desc.shape, transient=True)
        state.add_edge(source_access, None, target_access, None, dace.Memlet.from_array(source, sdfg.arrays[source]))


def expand_op_nodes(sdfg: dace.SDFG) -> None:
    """Expands every op node (recursively) into its own nested SDFG, named after the op."""
    with warnings.catch_warnings():
        # DaCe's own ExpandTransformation passes connector sets; the order does not matter to us.
        warnings.filterwarnings("ignore", message="Using sets for connectors")
        sdfg.expand_library_nodes(recursive=True)


def _rebuilt(expr):
    """``expr`` constructed anew from its parts, so that its terms are in SymPy's canonical order."""
    if not isinstance(expr, sympy.Basic) or not expr.args or isinstance(expr, sympy.Symbol):
        return expr
    return expr.func(*(_rebuilt(arg) for arg in expr.args))


def canonical_shapes(sdfg: dace.SDFG) -> None:
    """Shapes with min/max of symbols (a TopK's k = min(count, 300) after a data-dependent op) rebuilt in canonical
    order in every (nested) SDFG: DaCe compares a nested SDFG's descriptors with the outer ones structurally, and
    an ``m + Min(3, n)`` whose terms came out in another order counts as a different shape (no inlining, then a
    failed validation)."""
    for nested in sdfg.all_sdfgs_recursive():
        for desc in nested.arrays.values():
            if not any(isinstance(d, sympy.Basic) and d.has(sympy.Min, sympy.Max) for d in desc.shape):
                continue
            desc.shape = tuple(_rebuilt(d) for d in desc.shape)
            if hasattr(desc, "strides"):
                desc.strides = tuple(_rebuilt(d) for d in desc.strides)
                desc.total_size = _rebuilt(desc.total_size)


def expand(sdfg: dace.SDFG, instrument: bool = False) -> None:
    """Expands every op node (recursively) and simplifies the result. With ``instrument``, every op stays its
    own nested SDFG (named after the op) whose states DaCe times, instead of being inlined."""
    expand_op_nodes(sdfg)
    canonical_shapes(sdfg)
    if instrument:
        for node in sdfg.start_state.nodes():
            if isinstance(node, dace.nodes.NestedSDFG):
                for state in node.sdfg.states():
                    state.instrument = dace.InstrumentationType.Timer
    else:
        sdfg.simplify()
    sdfg.validate()
