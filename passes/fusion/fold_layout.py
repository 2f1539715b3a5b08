"""fold-layout: transposes and reshapes that only move bytes are removed or folded into their readers — heads
split by Reshape -> Transpose(0,2,1,3) and merged back after an Attention become its 3-D form (it reads and
writes [batch, sequence, heads * size] directly), Transpose∘Transpose composes, Reshape∘Reshape keeps the last,
and a reshape to the same shape disappears."""
from __future__ import annotations

import dataclasses

from sdflow.ir import Graph, known_values, lookup_op
from sdflow.ir.ops.movement import Transpose as TransposeOp
from sdflow.ir.semantics import with_static_inputs
from ..infra import Pass, PassContext, PassResult, register_pass
from ._rewrite import Topology

_RESHAPES = ("Reshape", "Flatten", "Squeeze", "Unsqueeze")
_HEADS = (0, 2, 1, 3)


@register_pass
@dataclasses.dataclass(frozen=True)
class FoldLayout(Pass):
    """Reshape->Transpose(0,2,1,3) around Attention => 3-D Attention; Transpose∘Transpose => one; no-op reshapes
    => removed."""

    name = "fold-layout"

    def apply(self, graph: Graph, ctx: PassContext) -> PassResult:
        notes: list[str] = []
        stats = {"attention_layouts": 0, "transposes_composed": 0, "reshapes_folded": 0}
        changed = True
        while changed:
            changed = False
            topology, values = Topology(graph), _Lazy(lambda: known_values(graph))
            for node in topology.order:
                rule = {"Attention": _fold_attention, "Transpose": _compose_transposes}.get(node.op_type)
                if node.op_type in _RESHAPES:
                    rule = _fold_reshape
                outcome = rule(graph, topology, node, values) if rule and not node.domain_name else None
                if outcome in stats:  # a rule returns the statistic it counts towards, or why it declined
                    stats[outcome] += 1
                    changed = True
                    break
                if outcome:
                    notes.append(f"{node.label}: {outcome}")
        return PassResult(any(stats.values()), stats, sorted(set(notes)) if ctx.explain else [])


class _Lazy:
    """The graph's compile-time values, computed on the first lookup (only Reshape∘Reshape needs them)."""

    def __init__(self, compute):
        self._compute, self._values = compute, None

    def get(self, key):
        if self._values is None:
            self._values = self._compute()
        return self._values.get(key)


def _split_heads(graph: Graph, topology: Topology, tensor: str, reader):
    """(the [B, S, H*D] source, H, the Transpose and Reshape) when ``tensor`` = Transpose(0,2,1,3) of a
    Reshape [B, S, H*D] -> [B, S, H, D] read by nothing else."""
    transpose = topology.producer.get(tensor)
    if transpose is None or transpose.op_type != "Transpose" or topology.only_consumer(tensor) is not reader:
        return None
    if tuple(TransposeOp.perm(transpose, 4)) != _HEADS:
        return None
    middle = graph.node_inputs(transpose)[0]
    reshape = topology.producer.get(middle)
    if reshape is None or reshape.op_type != "Reshape" or topology.only_consumer(middle) is not transpose:
        return None
    source = graph.node_inputs(reshape)[0]
    src, out = graph.tensor_type(source).shape, graph.tensor_type(middle).shape
    if len(src) != 3 or src[0] != out[0] or src[1] != out[1] or src[2] != out[2] * out[3]:
        return None
    return source, out[2], [transpose, reshape]


def _merge_heads(graph: Graph, topology: Topology, tensor: str):
    """(the [B, S, H*D] result, the Transpose and Reshape) when ``tensor`` [B, H, S, D] is only read by
    Transpose(0,2,1,3) -> Reshape to [B, S, H*D]."""
    transpose = topology.only_consumer(tensor)
    if transpose is None or transpose.op_type != "Transpose" or tuple(TransposeOp.perm(transpose, 4)) != _HEADS:
        return None
    middle = graph.node_outputs(transpose)[0]
    reshape = topology.only_consumer(middle)
    if reshape is None or reshape.op_type != "Reshape":
        return None
    result = graph.node_outputs(reshape)[0]
    mid, out = graph.tensor_type(middle).shape, graph.tensor_type(result).shape
    if len(out) != 3 or out[0] != mid[0] or out[1] != mid[1] or out[2] != mid[2] * mid[3]:
        return None
    return result, [transpose, reshape]


def _fold_attention(graph: Graph, topology: Topology, node, values):
    inputs = graph.node_inputs(node)
    if graph.tensor_type(inputs[0]).rank != 4 or any(inputs[4:]) or any(graph.node_outputs(node)[1:]):
        return None
    heads = [_split_heads(graph, topology, t, node) for t in inputs[:3]]
    merged = _merge_heads(graph, topology, graph.node_outputs(node)[0])
    if any(h is None for h in heads) or merged is None:
        return "heads are not split by Reshape -> Transpose(0,2,1,3) on every input and merged back on the output"
    folded = lookup_op("", "Attention", node.opset).node_class(
        node.label, inputs=list(node.onnx_inputs), outputs=list(node.onnx_outputs), opset=node.opset,
        **{**node.attributes, "q_num_heads": int(heads[0][1]), "kv_num_heads": int(heads[1][1])})
    old = [node, *heads[0][2], *heads[1][2], *heads[2][2], *merged[1]]
    graph.replace_ops(old, [(folded, [h[0] for h in heads] + inputs[3:], [merged[0], None, None, None])])
    return "attention_layouts"


def _compose_transposes(graph: Graph, topology: Topology, node, values):
    source = graph.node_inputs(node)[0]
    first = topology.producer.get(source)
    if first is None or first.op_type != "Transpose" or topology.only_consumer(source) is not node:
        return None
    rank = graph.tensor_type(source).rank
    inner, outer = TransposeOp.perm(first, rank), TransposeOp.perm(node, rank)
    perm = [inner[p] for p in outer]
    origin, result = graph.node_inputs(first)[0], graph.node_outputs(node)[0]
    if perm == list(range(rank)):
        if result in topology.outputs:
            return None
        graph.replace_uses(result, origin)
        graph.replace_ops([first, node])
        return "transposes_composed"
    composed = lookup_op("", "Transpose", 13).node_class(node.label, inputs=["data"], outputs=["transposed"],
                                                        opset=13, perm=perm)
    graph.replace_ops([first, node], [(composed, [origin], [result])])
    return "transposes_composed"


def _fold_reshape(graph: Graph, topology: Topology, node, values):
    source, result = graph.node_inputs(node)[0], graph.node_outputs(node)[0]
    if graph.tensor_type(source).shape == graph.tensor_type(result).shape:
        if result in topology.outputs or graph.is_constant(source) or source in graph.inputs:
            return None
        graph.replace_uses(result, source)
        graph.replace_ops([node])
        return "reshapes_folded"
    first = topology.producer.get(source)
    if node.op_type != "Reshape" or first is None or first.op_type not in _RESHAPES \
            or topology.only_consumer(source) is not node:
        return None
    inputs = graph.node_inputs(node)
    shape = with_static_inputs(node, [None, values.get(inputs[1])])[1]
    if shape is None or any(isinstance(v, int) and v == 0 for v in shape.tolist()):
        return "the second reshape's shape copies input dims (0) or is unknown"
    folded = lookup_op("", "Reshape", node.opset).node_class(node.label, inputs=list(node.onnx_inputs),
                                                            outputs=list(node.onnx_outputs), opset=node.opset,
                                                            **node.attributes)
    folded.static_inputs = dict(node.static_inputs)
    graph.replace_ops([first, node], [(folded, [graph.node_inputs(first)[0], inputs[1]], [result])])
    return "reshapes_folded"
