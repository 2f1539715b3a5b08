"""``sdflow.compile(model, fallback="reference")``: a model with nodes sdflow has no op for still runs. The graph
is cut into runs of supported nodes, each compiled by sdflow, and the unsupported nodes between them, each run by
ONNX Runtime as a one-node model; tensors pass between the parts by name. Every fallback node is named in
``FallbackModel.fallback_nodes`` (and by the CLI)."""
from __future__ import annotations

import dataclasses

import numpy as np
import onnx

from sdflow.codegen.runtime import Outputs, bind_inputs
from sdflow.frontends.onnx import node_reads, unsupported_node_indices, value_info_type
from sdflow.ir import CompileError, InputError, TensorType

__all__ = ["FallbackModel", "split_model"]


@dataclasses.dataclass
class Part:
    nodes: list[onnx.NodeProto]
    fallback: bool
    inputs: list[str]
    outputs: list[str]
    model: onnx.ModelProto
    runner: object = None  # a compiled sdflow model, or an ONNX Runtime session


def _node_label(node: onnx.NodeProto, index: int) -> str:
    return f"{node.name or f'{node.op_type}_{index}'} ({node.domain or 'ai.onnx'}::{node.op_type})"


def split_model(model: onnx.ModelProto) -> tuple[list[Part], list[str]]:
    """The parts in execution order and the labels of the fallback nodes. ``model`` is checked and
    shape-inferred (sdflow.frontends.onnx.load_model), so every tensor between parts has a type."""
    graph = model.graph
    fallback = set(unsupported_node_indices(model))
    groups: list[tuple[bool, list[onnx.NodeProto]]] = []
    for index, node in enumerate(graph.node):
        alone = index in fallback
        if groups and not alone and not groups[-1][0]:
            groups[-1][1].append(node)
        else:
            groups.append((alone, [node]))
    types = {v.name: v for v in list(graph.input) + list(graph.value_info) + list(graph.output)}
    initializers = {i.name: i for i in graph.initializer}
    graph_outputs = [o.name for o in graph.output]
    parts = []
    for position, (alone, nodes) in enumerate(groups):
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
        parts.append(Part(nodes, alone, inputs, outputs, part))
    labels = [_node_label(graph.node[i], i) for i in sorted(fallback)]
    return parts, labels


class FallbackModel:
    """Callable like a ``CompiledModel``: inputs by position or ONNX name, :class:`Outputs` in ONNX order."""

    def __init__(self, model: onnx.ModelProto, compile_part):
        from sdflow.ort import ort_session
        self.model = model
        self.parts, self.fallback_nodes = split_model(model)
        initializers = {i.name for i in model.graph.initializer}
        self.input_names = [i.name for i in model.graph.input if i.name not in initializers]
        self.output_names = [o.name for o in model.graph.output]
        self.parts = [part for part in self.parts if part.outputs]  # a part whose results nobody reads
        for part in self.parts:
            if not part.fallback:
                part.runner = compile_part(part.model)
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
        return (f"<FallbackModel {self.model.graph.name}: {len(self.parts)} parts, ONNX Runtime runs "
                f"{', '.join(self.fallback_nodes)}>")

    def __call__(self, *args, **kwargs) -> Outputs:
        values = bind_inputs(self.input_names, args, kwargs)
        for part in self.parts:
            feeds = {name: np.asarray(values[name]) for name in part.inputs}
            if part.fallback:
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
