"""Memory planning for the lowered SDFG: intermediate tensors whose lifetimes do not overlap share one buffer.

DaCe allocates every transient of a state for the whole state, so a lowered model gives each intermediate tensor
memory of its own (MobileNetV2: 54 tensors, ~27 MB at batch 1), and every layer writes into memory that has not
been touched since the previous call, far from the caches. ONNX Runtime's memory planner reuses a buffer once its
tensor's last reader has run; here a tensor takes over the buffer of an earlier tensor of the same descriptor
(shape, strides, dtype) when every op reading the earlier one is a dataflow ancestor of every op writing it. That
holds in every order DaCe may emit the ops in, so the reuse is safe whatever the schedule. DaCe's own
TransientReuse (``dace.transformation.passes.TransientReuse``) also lets an op's output take the buffer of one of
its inputs, which the kernels here cannot allow (they read their inputs while writing, through restrict
pointers); this one requires strict ancestry, keeps views and the arrays they view out, and uses ancestor bitsets,
which stay fast on BERT-sized graphs.

The plan is made on the SDFG DaCe generates code from (expanded and simplified): simplification merges the
access nodes of one array in a state (``ArrayElimination``), which on an already shared buffer erases the order
between one tenant's readers and the next tenant's writer (light Inception-v1 and DenseNet-121 gave wrong
numbers). Every plan is then checked by ``sdflow.ir.verify_buffer_sharing``, not trusted.
"""
from __future__ import annotations

import dataclasses

import dace

from sdflow.ir import op_span, read_between_states

__all__ = ["reuse_transients", "BufferPlan"]


@dataclasses.dataclass
class BufferPlan:
    """What the planner did: ``renamed`` {tensor: buffer it moved into}; ``tenants`` {access node: the tensor it
    held before renaming} for every access node of a shared buffer (what the verifier checks)."""

    renamed: dict[str, str] = dataclasses.field(default_factory=dict)
    tenants: dict = dataclasses.field(default_factory=dict)


def _signature(desc: dace.data.Array) -> tuple:
    return (str(desc.dtype), tuple(map(str, desc.shape)), tuple(map(str, desc.strides)), str(desc.total_size),
            tuple(map(str, desc.offset)), desc.storage, desc.lifetime, desc.start_offset, desc.alignment)


def reuse_transients(sdfg: dace.SDFG) -> BufferPlan:
    """Renames the transients of ``sdfg``'s states onto shared buffers (in place)."""
    users: dict[str, set] = {}
    for state in sdfg.states():
        for node in state.data_nodes():
            users.setdefault(node.data, set()).add(state)
    for name in read_between_states(sdfg):  # e.g. an If's condition, read after its state ran
        users.setdefault(name, set()).add(None)
    plan = BufferPlan()
    for state in sdfg.states():
        _reuse_in_state(sdfg, state, users, plan)
    for name in plan.renamed:
        sdfg.remove_data(name, validate=False)
    return plan


def _candidates(sdfg: dace.SDFG, state, users: dict) -> dict:
    """The state's transients that may share memory: plain arrays with one access node outside every map scope,
    used in this state only, not next to a view, not written with a write-conflict resolution, read by someone."""
    nodes: dict[str, list] = {}
    scopes = state.scope_dict()
    for node in state.data_nodes():
        nodes.setdefault(node.data, []).append(node)
    result = {}
    for name, found in nodes.items():
        desc = sdfg.arrays[name]
        if (type(desc) is not dace.data.Array or not desc.transient or len(found) != 1
                or users.get(name) != {state}):
            continue
        node = found[0]
        if scopes[node] is not None:
            continue
        edges = list(state.in_edges(node)) + list(state.out_edges(node))
        neighbours = [e.src for e in state.in_edges(node)] + [e.dst for e in state.out_edges(node)]
        if (not state.out_edges(node) or any(e.data.wcr is not None for e in edges)
                or any(isinstance(n, dace.nodes.AccessNode) and isinstance(sdfg.arrays[n.data], dace.data.View)
                       for n in neighbours)):
            continue
        result[name] = node
    return result


def _reuse_in_state(sdfg: dace.SDFG, state, users: dict, plan: BufferPlan) -> None:
    candidates = _candidates(sdfg, state, users)
    if len(candidates) < 2:
        return
    order = list(dace.sdfg.utils.dfs_topological_sort(state))
    bit = {node: 1 << i for i, node in enumerate(order)}
    ancestors: dict = {}
    for node in order:  # a node's ancestors as a bitset: its predecessors and theirs
        mask = 0
        for edge in state.in_edges(node):
            mask |= ancestors[edge.src] | bit[edge.src]
        ancestors[node] = mask

    def readers_mask(node) -> int:  # a reading map has read when its exit has run
        mask = 0
        for edge in state.out_edges(node):
            mask |= bit[op_span(state, edge.dst)[1]]
        return mask

    buffers: dict[tuple, list[list]] = {}  # signature -> [[buffer name, readers of its current tensor]]
    for node in order:
        if not isinstance(node, dace.nodes.AccessNode) or candidates.get(node.data) is not node:
            continue
        name = node.data
        writers = [edge.src for edge in state.in_edges(node)]
        if not writers:
            continue
        # Every reader of the buffer's current tensor must have run before every writer of this one starts.
        before = -1
        for writer in writers:
            before &= ancestors[op_span(state, writer)[0]]
        slots = buffers.setdefault(_signature(sdfg.arrays[name]), [])
        slot = next((s for s in slots if s[1] & ~before == 0), None)
        if slot is None:
            slots.append([name, readers_mask(node)])
            continue
        slot[1] = readers_mask(node)
        plan.renamed[name] = slot[0]
        plan.tenants[node] = name
        plan.tenants.setdefault(candidates[slot[0]], slot[0])
        _rename(state, node, name, slot[0])


def _rename(state, node, old: str, new: str) -> None:
    node.data = new
    for edge in list(state.in_edges(node)) + list(state.out_edges(node)):
        for tree_edge in state.memlet_tree(edge):
            if tree_edge.data.data == old:
                tree_edge.data.data = new
