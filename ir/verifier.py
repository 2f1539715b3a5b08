"""The IR verifier: structural invariants, re-inferred types, and DaCe's own SDFG validation."""
from __future__ import annotations

from dace import data as dace_data
from dace.sdfg import nodes as dnodes
from dace.sdfg.utils import dfs_topological_sort as topological_nodes

from .errors import SdflowError, VerificationError
from .graph import Graph
from .nodes import OpNode
from .semantics import infer_node, known_values, with_static_inputs

__all__ = ["verify", "verify_buffer_sharing", "op_span", "read_between_states"]


def verify(graph: Graph, dace_validation: bool = True) -> None:
    """Raises VerificationError naming the first broken invariant. ``dace_validation=False`` skips DaCe's own
    SDFG validation (seconds on a 12-layer transformer); sdflow's checks, cycles included, always run."""
    sdfg = graph.sdfg
    if len(list(sdfg.states())) != 1:
        raise VerificationError("an IR graph has exactly one state")
    state = graph.state
    for node in state.nodes():
        if not isinstance(node, (dnodes.AccessNode, OpNode)):
            raise VerificationError(f"unexpected node {node} of type {type(node).__name__} (lowered graph?)")
    _check_writers(graph)
    values = known_values(graph)
    ordered = graph.op_nodes()
    if len(ordered) != sum(isinstance(n, OpNode) for n in state.nodes()):
        raise VerificationError("the graph has a cycle")
    for node in ordered:
        _check_node(graph, node, values)
    if not dace_validation:
        return
    try:
        sdfg.validate()
    except Exception as error:  # DaCe raises several unrelated exception types
        raise VerificationError(f"DaCe validation failed: {error}") from error


def _check_writers(graph: Graph) -> None:
    writes: dict[str, int] = {}
    for access in graph.state.data_nodes():
        writes[access.data] = writes.get(access.data, 0) + graph.state.in_degree(access)
    for tensor, count in writes.items():
        if count > 1:
            raise VerificationError(f"tensor {tensor!r} is written {count} times")
        if graph.is_constant(tensor) and count:
            raise VerificationError(f"constant {tensor!r} is written by an op")
    for name, desc in graph.sdfg.arrays.items():
        if desc.transient and not writes.get(name):
            raise VerificationError(f"intermediate tensor {name!r} has no producer")


def _check_node(graph: Graph, node: OpNode, values) -> None:
    connected = {e.dst_conn for e in graph.state.in_edges(node)}
    for connector in node.onnx_inputs:
        if connector and connector not in connected:
            raise VerificationError(f"node {node.label!r} ({node.op_type}): input {connector!r} is not connected")
    inputs = graph.node_inputs(node)
    types = [graph.tensor_type(t) if t else None for t in inputs]
    try:
        expected = infer_node(node, types, with_static_inputs(node, [values.get(t) if t else None for t in inputs]))
    except SdflowError as error:
        raise VerificationError(str(error)) from None
    for tensor, ttype in zip(graph.node_outputs(node), expected):
        if tensor is None:
            continue
        actual = graph.tensor_type(tensor)
        if not actual.matches(ttype):
            raise VerificationError(f"node {node.label!r} ({node.op_type}): output {tensor!r} is {actual}, "
                                    f"but the op infers {ttype}")


def op_span(state, node) -> tuple:
    """The first and the last node of the top-level op that ``node`` belongs to: a map scope's entry and exit (it
    reads at its entry and writes at its exit, and runs as one op), else the node itself twice."""
    if isinstance(node, dnodes.EntryNode):
        return node, state.exit_node(node)
    if isinstance(node, dnodes.ExitNode):
        return state.entry_node(node), node
    return node, node


def read_between_states(sdfg) -> set[str]:
    """Names that interstate edges and branch conditions read (an If's condition tensor): such reads happen after
    a state has run, outside any dataflow order the states' graphs show."""
    names = set()
    for edge in sdfg.all_interstate_edges():
        names |= set(map(str, edge.data.free_symbols))
    for block in sdfg.all_control_flow_blocks():
        for code in getattr(block, "get_meta_codeblocks", list)():
            names |= set(map(str, code.get_free_symbols()))
    return names


def verify_buffer_sharing(sdfg, tenants: dict) -> None:
    """Proves a memory plan safe: ``tenants`` maps each access node of a shared buffer to the tensor it holds. For
    every two tensors of one buffer, every op touching one (writing or reading it) must be a strict dataflow
    ancestor of every op writing the other, so that no topological order (any order DaCe may emit) lets a reader
    of the earlier tensor run after, or together with, a writer of the later one. A map scope is one op: it is
    ordered by its exit when it touches a tensor and by its entry when it writes one (a map reading one tenant and
    writing the next would otherwise pass, its entry being an ancestor of its exit). A shared buffer next to a view
    or inside a map scope is refused: its accesses would not all be visible here."""
    by_state: dict = {}
    for state in sdfg.states():
        nodes = [n for n in state.data_nodes() if n in tenants]
        if nodes:
            by_state[state] = nodes
    if sum(map(len, by_state.values())) != len(tenants):
        raise VerificationError("the memory plan's access nodes are not in the SDFG (was it transformed after "
                                "planning?)")
    outside = read_between_states(sdfg)
    for state, nodes in by_state.items():
        for node in nodes:
            if node.data in outside:
                raise VerificationError(f"buffer {node.data!r} is shared, but a branch condition or an interstate "
                                        "edge reads it after its state")
        _verify_state_sharing(sdfg, state, nodes, tenants)


def _verify_state_sharing(sdfg, state, nodes, tenants) -> None:
    order = list(topological_nodes(state))
    bit = {node: 1 << i for i, node in enumerate(order)}
    ancestors: dict = {}
    for node in order:
        mask = 0
        for edge in state.in_edges(node):
            mask |= ancestors[edge.src] | bit[edge.src]
        ancestors[node] = mask
    scopes = state.scope_dict()
    touched: dict[tuple[str, str], int] = {}  # (buffer, tensor) -> ops writing or reading it
    written_after: dict[tuple[str, str], int] = {}  # (buffer, tensor) -> ops that are ancestors of all its writers
    shared = {n.data for n in nodes}
    for node in state.data_nodes():
        if node.data not in shared:
            continue
        if node not in tenants:
            raise VerificationError(f"buffer {node.data!r} is shared, but one of its access nodes has no tenant")
        neighbours = [e.src for e in state.in_edges(node)] + [e.dst for e in state.out_edges(node)]
        if scopes[node] is not None or any(isinstance(n, dnodes.AccessNode) and isinstance(
                sdfg.arrays[n.data], dace_data.View) for n in neighbours):
            raise VerificationError(f"buffer {node.data!r} is shared inside a map scope or next to a view")
        key = (node.data, tenants[node])
        for n in neighbours:
            touched[key] = touched.get(key, 0) | bit[op_span(state, n)[1]]
        writers = [e.src for e in state.in_edges(node)]
        if not writers:
            raise VerificationError(f"tensor {tenants[node]!r} in shared buffer {node.data!r} is never written")
        before = written_after.get(key, -1)
        for writer in writers:
            before &= ancestors[op_span(state, writer)[0]]
        written_after[key] = before
    keys = sorted(touched)
    for i, first in enumerate(keys):
        for second in keys[i + 1:]:
            if first[0] != second[0]:
                continue
            if touched[first] & ~written_after[second] and touched[second] & ~written_after[first]:
                raise VerificationError(
                    f"buffer {first[0]!r}: tensors {first[1]!r} and {second[1]!r} may be live at the same time "
                    "(an op touching one is not ordered before every writer of the other)")
