"""A model cut into parts that run one after the other, tensors passing between them by name:

- runs of ordinary nodes, each compiled by sdflow (symbolic dims bound at call time);
- nodes whose output shape depends on input values (NonZero, NonMaxSuppression, Unique, Compress with a run-time
  condition: codegen.host_kernels.HOST_OPS), each run alone by sdflow's own C++ kernels; the compiled part after
  one takes the size it produced as a symbolic dim. ``PartitionedModel.host_nodes`` names them;
- with ``sdflow.compile(model, fallback="reference")``, nodes sdflow has no op for, each run alone by ONNX Runtime
  as a one-node model. ``PartitionedModel.fallback_nodes`` names them (and the CLI reports them)."""
from __future__ import annotations

import dataclasses

import numpy as np
import onnx

from sdflow.codegen.host_kernels import HOST_OPS, host_op
from sdflow.codegen.runtime import Outputs, bind_inputs
from sdflow.frontends.onnx import node_reads, unsupported_node_indices, value_info_type
from sdflow.ir import CompileError, InputError, TensorType

__all__ = ["PartitionedModel", "FallbackModel", "split_model", "host_node_indices"]


@dataclasses.dataclass
class Part:
    nodes: list[onnx.NodeProto]
    kind: str  # "compiled", "host" (sdflow's dynamic-shape kernels) or "reference" (ONNX Runtime)
    inputs: list[str]
    outputs: list[str]
    model: onnx.ModelProto
    runner: object = None  # a compiled sdflow model, or an ONNX Runtime session


def _node_label(node: onnx.NodeProto, index: int) -> str:
    return f"{node.name or f'{node.op_type}_{index}'} ({node.domain or 'ai.onnx'}::{node.op_type})"


def host_node_indices(model: onnx.ModelProto) -> list[int]:
    """Positions of the nodes that sdflow's dynamic-shape kernels run between compiled parts: NonZero,
    NonMaxSuppression and Unique, and Compress whose condition is not a constant (a constant one compiles)."""
    graph = model.graph
    constants = {i.name for i in graph.initializer} | {o for n in graph.node if n.op_type == "Constant" for o in n.output}
    return [index for index, node in enumerate(graph.node) if node.domain in ("", "ai.onnx")
            and node.op_type in HOST_OPS and not (node.op_type == "Compress" and node.input[1] in constants)]


def split_model(model: onnx.ModelProto, fallback: bool = True) -> tuple[list[Part], list[str]]:
    """The parts in execution order and the labels of the nodes run alone (host and, with ``fallback``, ONNX
    Runtime nodes). ``model`` is checked and shape-inferred (sdflow.frontends.onnx.load_model), so every tensor
    between parts has a type."""
    graph = model.graph
    host = set(host_node_indices(model))
    reference = set(unsupported_node_indices(model)) - host if fallback else set()
    groups: list[tuple[str, list[onnx.NodeProto]]] = []
    for index, node in enumerate(graph.node):
        kind = "host" if index in host else "reference" if index in reference else "compiled"
        if groups and kind == "compiled" and groups[-1][0] == "compiled":
            groups[-1][1].append(node)
        else:
            groups.append((kind, [node]))
    types = {v.name: v for v in list(graph.input) + list(graph.value_info) + list(graph.output)}
    initializers = {i.name: i for i in graph.initializer}
    graph_outputs = [o.name for o in graph.output]
    parts = []
    for position, (kind, nodes) in enumerate(groups):
        produced = {name for node in nodes for name in node.output if name}
        # (a node's subgraphs read values of the enclosing scope too: an If branch, a Loop body)
        used = list(dict.fromkeys(name for node in nodes for name in node_reads(node)))
        later = {name for _, other in groups[position + 1:] for node in other for name in node_reads(node)}
        inputs = [name for name in used if name not in produced and name not in initializers]
        outputs = [name for node in nodes for name in node.output if name and (name in later or name in graph_outputs)]
        missing = [name for name in inputs + outputs if name not in types]
        if missing:
            raise CompileError(f"fallback: the types of {missing} are unknown (ONNX shape inference gave none)")
        part_graph = onnx.helper.make_graph(
            nodes, f"{graph.name or 'model'}_part{position}", [types[n] for n in inputs], [types[n] for n in outputs],
            [initializers[n] for n in used if n in initializers])
        part = onnx.helper.make_model(part_graph, opset_imports=model.opset_import, ir_version=model.ir_version)
        part.functions.extend(model.functions)
        parts.append(Part(nodes, kind, inputs, outputs, part))
    labels = [_node_label(graph.node[i], i) for i in sorted(host | reference)]
    return parts, labels


class PartitionedModel:
    """Callable like a ``CompiledModel``: inputs by position or ONNX name, :class:`Outputs` in ONNX order."""

    def __init__(self, model: onnx.ModelProto, compile_part, fallback: bool = True):
        from sdflow.ort import ort_session
        self.model = model
        self.parts, _ = split_model(model, fallback)
        initializers = {i.name for i in model.graph.initializer}
        self.input_names = [i.name for i in model.graph.input if i.name not in initializers]
        self.output_names = [o.name for o in model.graph.output]
        self.parts = [part for part in self.parts if part.outputs]  # a part whose results nobody reads
        index = {id(node): k for k, node in enumerate(model.graph.node)}
        self.host_nodes = [_node_label(p.nodes[0], index[id(p.nodes[0])]) for p in self.parts if p.kind == "host"]
        self.fallback_nodes = [_node_label(p.nodes[0], index[id(p.nodes[0])]) for p in self.parts
                               if p.kind == "reference"]
        # Weights the host kernels read (compiled and ONNX Runtime parts carry their own).
        read = {name for part in self.parts if part.kind == "host" for name in part.nodes[0].input}
        self._weights = {i.name: onnx.numpy_helper.to_array(i) for i in model.graph.initializer if i.name in read}
        for part in self.parts:
            if part.kind == "compiled":
                part.runner = compile_part(part.model)
                continue
            if part.kind == "host":
                part.runner = host_op(part.nodes[0])
                continue
            try:
                part.runner = ort_session(part.model, threads=None)
            except Exception as error:  # ONNX Runtime's own exception types
                raise CompileError(f"fallback: ONNX Runtime cannot run {self._names(part)}: "
                                   f"{' '.join(str(error).split())[:300]}") from None

    @staticmethod
    def _names(part: Part) -> str:
        return ", ".join(f"{n.name or n.op_type} ({n.op_type})" for n in part.nodes)

    @property
    def input_types(self) -> dict[str, TensorType]:
        return {name: value_info_type(v) for v in self.model.graph.input for name in [v.name] if name in self.input_names}

    @property
    def output_types(self) -> dict[str, TensorType]:
        return {v.name: value_info_type(v) for v in self.model.graph.output}

    def __repr__(self) -> str:
        runs = [f"sdflow's dynamic-shape kernels run {', '.join(self.host_nodes)}"] if self.host_nodes else []
        runs += [f"ONNX Runtime runs {', '.join(self.fallback_nodes)}"] if self.fallback_nodes else []
        return f"<PartitionedModel {self.model.graph.name}: {len(self.parts)} parts, {'; '.join(runs)}>"

    def __call__(self, *args, **kwargs) -> Outputs:
        values = {**self._weights, **bind_inputs(self.input_names, args, kwargs)}
        for part in self.parts:
            feeds = {name: np.asarray(values[name]) for name in part.inputs}
            if part.kind == "host":
                node = part.nodes[0]
                results = part.runner(*[np.asarray(values[name]) if name else None for name in node.input])
                results = [results[list(node.output).index(name)] for name in part.outputs]
            elif part.kind == "reference":
                try:
                    results = part.runner.run(part.outputs, feeds)
                except Exception as error:  # ONNX Runtime's own exception types
                    raise InputError(f"fallback: ONNX Runtime failed in {self._names(part)}: "
                                     f"{' '.join(str(error).split())[:300]}") from None
            else:
                results = part.runner(**feeds)
                results = [results[name] for name in part.outputs]
            values.update(zip(part.outputs, results))
        return Outputs(self.output_names, [values[name] for name in self.output_names])


FallbackModel = PartitionedModel  # the name of releases before dynamic-shape ops ran in parts
