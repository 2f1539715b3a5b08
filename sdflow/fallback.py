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
from sdflow.frontends.onnx import node_reads, outer_names, unsupported_node_indices, value_info_type
from sdflow.ir import CompileError, InputError, TensorType
from sdflow.ir.ops.movement import DATA_DEPENDENT_PREFIX

__all__ = ["PartitionedModel", "FallbackModel", "split_model", "host_node_indices"]


@dataclasses.dataclass
class Part:
    nodes: list[onnx.NodeProto]
    kind: str  # "compiled", "host" (sdflow's dynamic-shape kernels) or "reference" (ONNX Runtime)
    inputs: list[str]
    outputs: list[str]
    model: onnx.ModelProto
    label: str = ""  # a node run alone: its name and op, as reported
    runner: object = None  # a compiled sdflow model, sdflow's kernel, or an ONNX Runtime session


def _node_label(node: onnx.NodeProto, index: int) -> str:
    return f"{node.name or f'{node.op_type}_{index}'} ({node.domain or 'ai.onnx'}::{node.op_type})"


def _has_host_op(graph: onnx.GraphProto) -> bool:
    """Whether ``graph`` or one of its subgraphs has a node of HOST_OPS."""
    return any((node.op_type in HOST_OPS and node.domain in ("", "ai.onnx")) or any(
        _has_host_op(a.g) for a in node.attribute if a.type == onnx.AttributeProto.GRAPH) for node in graph.node)


def host_node_indices(model: onnx.ModelProto) -> list[int]:
    """Positions of the nodes that run alone between compiled parts: NonZero, NonMaxSuppression and Unique, and
    Compress whose condition is not a constant (a constant one compiles), by sdflow's dynamic-shape kernels; and
    an If whose branches hold one of those (a detector's "no boxes?" test around its NMS), whose condition picks
    the branch at run time, that branch then compiled (once) and run as a model of its own."""
    graph = model.graph
    constants = {i.name for i in graph.initializer}
    constants |= {o for n in graph.node if n.op_type == "Constant" for o in n.output}
    found = []
    for index, node in enumerate(graph.node):
        if node.domain not in ("", "ai.onnx"):
            continue
        if node.op_type in HOST_OPS and not (node.op_type == "Compress" and node.input[1] in constants):
            found.append(index)
        elif node.op_type == "If" and any(_has_host_op(a.g) for a in node.attribute if a.name.endswith("_branch")):
            found.append(index)
    return found


def _data_dependent_dims(value_info: onnx.ValueInfoProto) -> onnx.ValueInfoProto:
    renamed = onnx.ValueInfoProto()
    renamed.CopyFrom(value_info)
    for axis, dim in enumerate(renamed.type.tensor_type.shape.dim):
        if dim.HasField("dim_value"):
            continue
        if not dim.dim_param:
            dim.dim_param = f"{DATA_DEPENDENT_PREFIX}{value_info.name}_{axis}"
        elif dim.dim_param.startswith("unk__"):
            dim.dim_param = DATA_DEPENDENT_PREFIX + dim.dim_param.removeprefix("unk__")
    return renamed


def split_model(model: onnx.ModelProto, fallback: bool = True) -> list[Part]:
    """The parts in execution order; a node run alone (host and, with ``fallback``, ONNX Runtime nodes) is labelled
    in its part. ``model`` is checked and shape-inferred (sdflow.frontends.onnx.load_model), so every tensor
    between parts has a type."""
    graph = model.graph
    host = set(host_node_indices(model))
    reference = set(unsupported_node_indices(model)) - host if fallback else set()
    groups: list[tuple[str, list[onnx.NodeProto]]] = []
    labels = []
    for index, node in enumerate(graph.node):
        kind = "host" if index in host else "reference" if index in reference else "compiled"
        if groups and kind == "compiled" and groups[-1][0] == "compiled":
            groups[-1][1].append(node)
        else:
            groups.append((kind, [node]))
            labels.append(_node_label(node, index) if kind != "compiled" else "")
    types = {v.name: v for v in list(graph.input) + list(graph.value_info) + list(graph.output)}
    # With host parts, the sizes ONNX shape inference could not give (unk__<k> or nothing: sizes produced at run
    # time) are named dyn_<k> in the parts, where ONNX's Slice clamping applies in full
    # (ir.ops.movement.is_data_dependent) instead of the assumption that a bound lies inside the dim.
    if any(kind == "host" for kind, _ in groups):
        types = {name: _data_dependent_dims(v) for name, v in types.items()}
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
        parts.append(Part(nodes, kind, inputs, outputs, part, labels[position]))
    return parts


class PartitionedModel:
    """Callable like a ``CompiledModel``: inputs by position or ONNX name, :class:`Outputs` in ONNX order."""

    def __init__(self, model: onnx.ModelProto, compile_part, fallback: bool = True):
        from sdflow.ort import ort_session
        self.model = model
        self.parts = split_model(model, fallback)
        initializers = {i.name for i in model.graph.initializer}
        self.input_names = [i.name for i in model.graph.input if i.name not in initializers]
        self.output_names = [o.name for o in model.graph.output]
        self.parts = [part for part in self.parts if part.outputs]  # a part whose results nobody reads
        self.host_nodes = [p.label for p in self.parts if p.kind == "host"]
        self.fallback_nodes = [p.label for p in self.parts if p.kind == "reference"]
        # Weights the host kernels read (compiled and ONNX Runtime parts carry their own).
        read = {name for part in self.parts if part.kind == "host" for name in part.nodes[0].input}
        self._weights = {i.name: onnx.numpy_helper.to_array(i) for i in model.graph.initializer if i.name in read}
        for part in self.parts:
            if part.kind == "compiled":
                part.runner = compile_part(part.model)
                continue
            if part.kind == "host":
                part.runner = _BranchRunner(part, model, compile_part) if part.nodes[0].op_type == "If" \
                    else host_op(part.nodes[0])
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
                if isinstance(part.runner, _BranchRunner):
                    results = part.runner.run(values)
                else:
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


class _BranchRunner:
    """An If whose branches hold data-dependent ops: the condition picks a branch at run time; each branch is a
    model of its own (inputs: the outer values it reads), compiled on first use (as a PartitionedModel)."""

    def __init__(self, part: Part, model: onnx.ModelProto, compile_part):
        self.node, self.compile_part = part.nodes[0], compile_part
        graph = model.graph
        self.types = {v.name: v for v in (*graph.input, *graph.value_info, *graph.output)}
        self.initializers = {i.name: i for i in graph.initializer}
        self.model = model
        self.branches = {}

    def _branch_model(self, branch: onnx.GraphProto) -> onnx.ModelProto:
        reads = outer_names(branch)
        inputs = [self.types[name] for name in reads if name not in self.initializers]
        graph = onnx.helper.make_graph(list(branch.node), f"{branch.name or 'branch'}", inputs, list(branch.output),
                                       [*branch.initializer, *(self.initializers[n] for n in reads
                                                               if n in self.initializers)])
        graph.value_info.extend(branch.value_info)
        proto = onnx.helper.make_model(graph, opset_imports=self.model.opset_import, ir_version=self.model.ir_version)
        proto.functions.extend(self.model.functions)
        return proto

    def run(self, values: dict) -> list:
        take = bool(np.asarray(values[self.node.input[0]]).ravel()[0])
        name = "then_branch" if take else "else_branch"
        if name not in self.branches:
            branch = next(a.g for a in self.node.attribute if a.name == name)
            self.branches[name] = self.compile_part(self._branch_model(branch))
        compiled = self.branches[name]
        results = compiled(**{n: values[n] for n in compiled.input_names})
        return [np.asarray(r) for r in results]


FallbackModel = PartitionedModel  # the name of releases before dynamic-shape ops ran in parts
