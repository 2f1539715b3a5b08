"""fuse-normalization: the decomposed LayerNorm exporters emit (ReduceMean, Sub, Pow, ReduceMean, Add, Sqrt, Div,
Mul, Add) becomes one LayerNormalization; then a LayerNorm absorbs the bias + residual adds before it (BDRLN) and a
Softmax its scale and mask (SM), each into one Fused row kernel."""
from __future__ import annotations

import dataclasses

import numpy as np

from sdflow.ir import Graph, known_values, lookup_op
from sdflow.ir.semantics import with_static_inputs
from sdflow.ir.ops.reduction import reduce_axes
from ..infra import Pass, PassContext, PassResult, register_pass
from ._rewrite import Topology, fuse_nodes, is_pointwise, scalar_value

_ROW_DTYPES = {"LayerNormalization": ("float32", ), "Softmax": ("float32", "float64")}


@register_pass
@dataclasses.dataclass(frozen=True)
class FuseNormalization(Pass):
    """ReduceMean/Sub/Pow/.../Div => LayerNorm; Add(bias) -> Add(residual) -> LayerNorm and Div/Mul(scale) ->
    Add(mask) -> Softmax  =>  one Fused row kernel each."""

    name = "fuse-normalization"

    def apply(self, graph: Graph, ctx: PassContext) -> PassResult:
        notes: list[str] = []
        recognised = self._recognise_layernorms(graph, notes)
        topology = Topology(graph)
        absorbed = {"LayerNormalization": 0, "Softmax": 0}
        for node in topology.order:
            if node.op_type not in _ROW_DTYPES or node.domain_name:
                continue
            reason = self._row_decline(graph, topology, node)
            members = [] if reason else self._prologue(graph, topology, node)
            if reason or not members:
                notes.append(f"{node.label}: no prologue fused, {reason or 'its input is not made by single-use element-wise ops'}")
                continue
            order = {n: k for k, n in enumerate(topology.order)}
            fuse_nodes(graph, topology, sorted([*members, node], key=order.__getitem__), f"fused_{node.label}",
                       outputs=[graph.node_outputs(node)[0]])
            topology = Topology(graph)
            absorbed[node.op_type] += 1
        stats = {"layernorms_recognised": recognised, "bias_residual_layernorms": absorbed["LayerNormalization"],
                 "scaled_masked_softmaxes": absorbed["Softmax"]}
        return PassResult(any(stats.values()), stats, notes if ctx.explain else [])

    @staticmethod
    def _row_decline(graph: Graph, topology: Topology, node) -> str | None:
        x = graph.tensor_type(graph.node_inputs(node)[0])
        if x.dtype.name not in _ROW_DTYPES[node.op_type]:
            return f"the row kernel does not take {x.dtype.name}"
        if node.attr("axis", -1) not in (-1, x.rank - 1):
            return "it does not work along the last axis"
        if any(t for t in graph.node_outputs(node)[1:]):
            return "it also writes its mean / inverse standard deviation"
        return None

    @staticmethod
    def _prologue(graph: Graph, topology: Topology, row) -> list:
        """The single-use point-wise ops whose results flow only into ``row``'s input."""
        members, stack = {row}, [graph.node_inputs(row)[0]]
        while stack:
            producer = topology.producer.get(stack.pop())
            if producer is None or producer in members or not is_pointwise(graph, producer):
                continue
            outputs = [t for t in graph.node_outputs(producer) if t]
            if len(outputs) != 1 or topology.escapes(outputs[0], members):
                continue
            if topology.creates_cycle(members | {producer}):
                continue
            members.add(producer)
            stack.extend(t for t in graph.node_inputs(producer) if t)
        return [m for m in members if m is not row]

    def _recognise_layernorms(self, graph: Graph, notes: list[str]) -> int:
        count = 0
        while True:
            topology, values = Topology(graph), known_values(graph)
            for node in topology.order:
                if node.op_type == "ReduceMean" and not node.domain_name:
                    match = _match_layernorm(graph, topology, values, node)
                    if isinstance(match, str):
                        notes.append(f"{node.label}: not a LayerNorm, {match}")
                        continue
                    _replace_layernorm(graph, match)
                    count += 1
                    break
            else:
                return count


def _last_axis_mean(graph, values, node) -> bool:
    inputs = graph.node_inputs(node)
    rank = graph.tensor_type(inputs[0]).rank
    known = with_static_inputs(node, [values.get(t) if t else None for t in inputs])
    axes_value = known[1] if len(known) > 1 else None
    if len(inputs) > 1 and inputs[1] and axes_value is None:
        return False
    return reduce_axes(node, rank, axes_value) == [rank - 1] and node.attr("keepdims", 1) == 1


def _other(graph, node, tensor):
    """The input of a binary ``node`` that is not ``tensor``."""
    a, b = graph.node_inputs(node)[:2]
    return b if a == tensor else a


def _match_layernorm(graph, topology, values, mean):
    """The tensors of ReduceMean -> Sub -> Pow(2) -> ReduceMean -> Add(eps) -> Sqrt -> Div [-> Mul(scale)]
    [-> Add(bias)] starting at ``mean``, or why it is not that."""
    x = graph.node_inputs(mean)[0]
    if not _last_axis_mean(graph, values, mean):
        return "it does not average the last axis (keepdims)"
    sub = topology.only_consumer(graph.node_outputs(mean)[0])
    if sub is None or sub.op_type != "Sub" or graph.node_inputs(sub) != [x, graph.node_outputs(mean)[0]]:
        return "its mean is not subtracted from its input alone"
    centred = graph.node_outputs(sub)[0]
    readers = topology.consumers.get(centred, [])
    square = next((r for r in readers if r.op_type == "Pow" and scalar_value(values, graph.node_inputs(r)[1]) == 2.0
                   or r.op_type == "Mul" and graph.node_inputs(r) == [centred, centred]), None)
    divide = next((r for r in readers if r.op_type == "Div" and graph.node_inputs(r)[0] == centred), None)
    if len(readers) != 2 or square is None or divide is None or centred in topology.outputs:
        return "the centred input is not both squared and divided"
    chain, tensor = [], graph.node_outputs(square)[0]
    for op_type in ("ReduceMean", "Add", "Sqrt"):
        reader = topology.only_consumer(tensor)
        if reader is None or reader.op_type != op_type:
            return f"the variance chain lacks {op_type}"
        chain.append(reader)
        tensor = graph.node_outputs(reader)[0]
    variance_mean, add_eps, _ = chain
    epsilon = scalar_value(values, _other(graph, add_eps, graph.node_outputs(variance_mean)[0]))
    if not _last_axis_mean(graph, values, variance_mean) or epsilon is None:
        return "the variance is not a last-axis mean plus a constant epsilon"
    if topology.only_consumer(tensor) is not divide or graph.node_inputs(divide)[1] != tensor:
        return "the centred input is not divided by the standard deviation"
    nodes, out = [mean, sub, square, *chain, divide], graph.node_outputs(divide)[0]
    scale = bias = None
    size = graph.tensor_type(x).shape[-1]
    for op_type in ("Mul", "Add"):
        reader = topology.only_consumer(out)
        other = _other(graph, reader, out) if reader is not None and reader.op_type == op_type else None
        if other is None or not graph.is_constant(other) or graph.tensor_type(other).shape not in ((size, ), (1, size)):
            break
        scale, bias = (other, bias) if op_type == "Mul" else (scale, other)
        nodes.append(reader)
        out = graph.node_outputs(reader)[0]
    return {"x": x, "scale": scale, "bias": bias, "epsilon": epsilon, "nodes": nodes, "out": out}


def _replace_layernorm(graph: Graph, match: dict) -> None:
    x_type = graph.tensor_type(match["x"])
    scale = match["scale"] or graph.add_constant("layernorm_ones", np.ones(x_type.shape[-1], x_type.dtype))
    scale_value = graph.constant(scale).reshape(-1)
    if graph.tensor_type(scale).rank != 1:
        scale = graph.add_constant(f"{scale}_flat", scale_value)
    bias = match["bias"]
    if bias is not None and graph.tensor_type(bias).rank != 1:
        bias = graph.add_constant(f"{bias}_flat", graph.constant(bias).reshape(-1))
    node = lookup_op("", "LayerNormalization", 17).node_class(
        f"layernorm_{match['nodes'][0].label}", inputs=["X", "Scale", "B" if bias else ""], outputs=["Y", "", ""],
        opset=17, axis=-1, epsilon=match["epsilon"])
    graph.replace_ops(match["nodes"], [(node, [match["x"], scale, bias], [match["out"], None, None])])
