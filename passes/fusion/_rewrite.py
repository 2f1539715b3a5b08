"""What the fusion passes share: a producer/consumer index of the graph, and replacing a set of op nodes by one
Fused node whose program runs them in order."""
from __future__ import annotations

import dataclasses

import numpy as np

from sdflow.ir import Graph, OpNode, infer_node, semantics_of
from sdflow.ir.ops.elementwise import ELEMENTWISE_OPS
from sdflow.ir.ops.fused import Fused, Program, Step

__all__ = ["Topology", "fuse_nodes", "fuse_epilogues", "is_elementwise", "is_pointwise", "pointwise_chain",
           "scalar_value", "FUSABLE_DTYPES"]

# Fused kernels compute each value in its own type; float16 ops round per op, which fusion would change.
FUSABLE_DTYPES = ("float32", "float64", "bool", "int64", "int32")
# Element-wise in shape, but one input is a shape or a type-giver, not a per-element operand.
_NOT_PER_ELEMENT = ("Expand", "CastLike")


class Topology:
    """Producers and consumers of every tensor, computed in one sweep (the graph's own lookups scan it)."""

    def __init__(self, graph: Graph):
        self.graph = graph
        self.producer: dict[str, OpNode] = {}
        self.consumers: dict[str, list[OpNode]] = {}
        self.order = graph.op_nodes()
        for node in self.order:
            for tensor in graph.node_outputs(node):
                if tensor:
                    self.producer[tensor] = node
            for tensor in graph.node_inputs(node):
                if tensor:
                    self.consumers.setdefault(tensor, []).append(node)
        self.outputs = set(graph.outputs)

    def only_consumer(self, tensor: str) -> OpNode | None:
        """The single op reading ``tensor`` when nothing else (no other op, no graph output) does."""
        readers = self.consumers.get(tensor, [])
        if len(readers) == 1 and tensor not in self.outputs:
            return readers[0]
        return None

    def escapes(self, tensor: str, members) -> bool:
        """Whether ``tensor`` is read outside ``members`` (or is a graph output)."""
        return tensor in self.outputs or any(c not in members for c in self.consumers.get(tensor, []))

    def creates_cycle(self, members) -> bool:
        """Whether fusing ``members`` into one node would make a cycle: a path leaves the set and comes back."""
        members = set(members)
        frontier = [c for m in members for t in self.graph.node_outputs(m) if t
                    for c in self.consumers.get(t, []) if c not in members]
        seen = set()
        while frontier:
            node = frontier.pop()
            if node in seen:
                continue
            seen.add(node)
            for tensor in self.graph.node_outputs(node):
                for consumer in self.consumers.get(tensor, []) if tensor else []:
                    if consumer in members:
                        return True
                    frontier.append(consumer)
        return False


def is_elementwise(graph: Graph, node: OpNode) -> bool:
    """An element-wise op whose values all have types a fused kernel computes exactly as the op does."""
    if node.op_type not in ELEMENTWISE_OPS or node.domain_name or node.op_type in _NOT_PER_ELEMENT:
        return False
    tensors = [t for t in graph.node_inputs(node) + graph.node_outputs(node) if t]
    return all(graph.tensor_type(t).dtype.name in FUSABLE_DTYPES for t in tensors)


def scalar_value(values, tensor) -> float | None:
    """The number a one-element tensor holds, from ``values`` (constants or compile-time values), else None."""
    value = values.get(tensor) if tensor else None
    if value is None or np.size(value) != 1 or np.asarray(value).dtype == object:
        return None
    return float(np.asarray(value).ravel()[0])


def is_pointwise(graph: Graph, node: OpNode) -> bool:
    """An element-wise op, or a Fused element-wise kernel (what an epilogue or a prologue may absorb)."""
    if isinstance(node, Fused):
        return node.parsed.kind == "elementwise"
    return is_elementwise(graph, node)


def pointwise_chain(graph: Graph, topology: Topology, anchor: OpNode, notes: list) -> list[OpNode]:
    """The chain of single-reader point-wise ops after ``anchor`` (a GEMM or a convolution) whose outputs keep
    its output's shape: what an epilogue can apply to each element of the result while it is in cache."""
    result = graph.node_outputs(anchor)[0]
    shape = graph.tensor_type(result).shape
    chain, tensor = [], result
    while True:
        reader = topology.only_consumer(tensor)
        if reader is None or not is_pointwise(graph, reader):
            break
        outputs = [t for t in graph.node_outputs(reader) if t]
        if len(outputs) != 1 or graph.tensor_type(outputs[0]).shape != shape:
            notes.append(f"{anchor.label}: epilogue stops before {reader.label} (its output has another shape)")
            break
        if topology.creates_cycle({anchor, *chain, reader}):
            notes.append(f"{anchor.label}: epilogue stops before {reader.label} (another input depends on the "
                         "result)")
            break
        chain.append(reader)
        tensor = outputs[0]
    return chain


def fuse_epilogues(graph: Graph, op_type: str, prefix: str, decline, trim=None,
                   result_noun: str = "output", domain: str = "", accept=None) -> tuple[int, int, list[str]]:
    """Fuses every ``op_type`` op (of ``domain``, default ONNX's) with the point-wise chain after it
    (``pointwise_chain``, cut by ``trim(anchor, chain, notes)``) into one Fused node ``<prefix>_<label>``;
    ``accept(node)``, when given, picks the anchors among those ops silently; ``decline(anchor)`` gives a reason to
    leave an anchor alone. Returns (anchors fused, ops absorbed, notes on every anchor left alone)."""
    topology = Topology(graph)
    fused, absorbed, notes = 0, 0, []
    for node in topology.order:
        if node.op_type != op_type or (node.domain_name or "") != domain or (accept and not accept(node)):
            continue
        reason = decline(node)
        chain = [] if reason else pointwise_chain(graph, topology, node, notes)
        if chain and trim is not None:
            chain = trim(node, chain, notes)
        if not reason and not chain:
            readers = ", ".join(f"{r.label} ({getattr(r, 'kernel', '') or r.op_type})"
                                for r in topology.consumers.get(graph.node_outputs(node)[0], [])) or "a graph output"
            reason = f"its {result_noun} is read by {readers}, not by one element-wise op of the same shape"
        if reason:
            notes.append(f"{node.label}: no epilogue fused, {reason}")
            continue
        fuse_nodes(graph, topology, [node, *chain], f"{prefix}_{node.label}")
        topology = Topology(graph)
        fused += 1
        absorbed += sum(len(n.parsed.steps) if isinstance(n, Fused) else 1 for n in chain)
    return fused, absorbed, notes


def fuse_nodes(graph: Graph, topology: Topology, nodes: list[OpNode], label: str,
               outputs: list[str] | None = None) -> Fused:
    """Replaces ``nodes`` (in topological order) by one Fused node writing the tensors that escape the set (or
    ``outputs``); tensors only the set used disappear with it."""
    members = set(nodes)
    produced: dict[str, str] = {}
    inputs: list[str] = []
    steps = []

    def value_of(tensor):
        if tensor in produced:
            return produced[tensor]
        if tensor not in inputs:
            inputs.append(tensor)
        return f"in{inputs.index(tensor)}"

    for node in nodes:
        arguments = [value_of(t) if t else None for t in graph.node_inputs(node)]
        if isinstance(node, Fused):  # its program is inlined, its values renamed
            inner = {f"in{i}": a for i, a in enumerate(arguments)}
            for step in node.parsed.steps:
                k = len(steps)
                renamed = {r: f"s{k}.{p}" for p, r in enumerate(step.results) if r}
                steps.append(dataclasses.replace(step, args=tuple(inner[a] if a else None for a in step.args),
                                                 results=tuple(renamed.get(r) for r in step.results)))
                inner.update(renamed)
            for tensor, value in zip(graph.node_outputs(node), node.parsed.outputs):
                if tensor:
                    produced[tensor] = inner[value]
            continue
        k = len(steps)
        results = []
        for position, tensor in enumerate(graph.node_outputs(node)):
            results.append(f"s{k}.{position}" if tensor else None)
            if tensor:
                produced[tensor] = f"s{k}.{position}"
        for position in semantics_of(node).optional_value_inputs:
            tensor = graph.node_inputs(node)[position] if position < len(node.onnx_inputs) else None
            if tensor and graph.is_constant(tensor) and node.static_input(position) is None:
                node.set_static_input(position, graph.constant(tensor))  # Pow's exponent: x*x, not pow()
        steps.append(Step.of(node, arguments, results))
    if outputs is None:
        outputs = [t for t in produced if topology.escapes(t, members)]
    program = Program(tuple(steps), tuple(produced[t] for t in outputs))
    fused = Fused.make(label, program, len(inputs))
    types = infer_node(fused, [graph.tensor_type(t) for t in inputs], [])
    for tensor, ttype in zip(outputs, types):
        if ttype != graph.tensor_type(tensor):
            raise AssertionError(f"fusing {label}: {tensor} would change type {graph.tensor_type(tensor)} -> {ttype}")
    graph.replace_ops(nodes, [(fused, inputs, outputs)])
    return fused


def unfuse(graph: Graph, node: Fused) -> list[OpNode]:
    """Replaces a fused op by its steps as ops of their own (the values between them become tensors again), for a
    later pass that rewrites one of them (quantize-dynamic-int8 on a Conv fused with its epilogue). Returns the new
    op nodes in program order."""
    program = node.parsed
    inputs, outputs = graph.node_inputs(node), graph.node_outputs(node)
    types = program.types([graph.tensor_type(t) if t else None for t in inputs])
    names = {f"in{i}": t for i, t in enumerate(inputs) if t}
    names.update({value: tensor for value, tensor in zip(program.outputs, outputs) if tensor})
    ops = []
    for index, step in enumerate(program.steps):
        for result in step.results:
            if result and result not in names:
                names[result] = graph.add_tensor(f"{node.label}_{index}", types[result])
        op = step.node()
        op.label = f"{node.label}_{step.op_type.lower()}{index}"
        ops.append((op, [names[a] if a else None for a in step.args], [names[r] if r else None for r in step.results]))
    graph.replace_ops([node], ops)
    return [op for op, _, _ in ops]


def unfuse_convolutions(graph: Graph, wanted) -> int:
    """Takes apart every fused convolution (kinds conv and conv_depthwise) one of whose Conv steps reads a weight
    for which ``wanted(tensor)`` holds; returns how many."""
    count = 0
    for node in graph.op_nodes():
        if not isinstance(node, Fused) or node.parsed.kind not in ("conv", "conv_depthwise"):
            continue
        inputs = graph.node_inputs(node)
        weights = [inputs[int(s.args[1][2:])] for s in node.parsed.steps
                   if s.op_type == "Conv" and s.args[1] and s.args[1].startswith("in")]
        if any(wanted(w) for w in weights):
            unfuse(graph, node)
            count += 1
    return count
