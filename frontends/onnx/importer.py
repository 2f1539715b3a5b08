"""ONNX graph -> IR graph: every node becomes an op node, initializers and Constant nodes become graph-owned
constants, dim_params and unknown dims become symbols."""
from __future__ import annotations

import numpy as np
import onnx

import sympy

from sdflow.ir import (Graph, ModelLoadError, ShapeInferenceError, TensorType, UnsupportedOpError, infer_node,
                       lookup_op)
from sdflow.ir.ops import normalize_axis
from sdflow.ir.nodes import attribute_value
from sdflow.ir.ops.control import BRANCHES, serialise_branch
from sdflow.ir.semantics import semantics_of
from sdflow.ir.types import make_symbol, numpy_dtype
from .decompose import decompose, decomposes
from .loader import load_model

__all__ = ["import_model", "unsupported_nodes", "unsupported_node_indices", "unsupported_element_types",
           "value_info_type", "node_reads"]

_VARIADIC = onnx.defs.OpSchema.FormalParameterOption.Variadic
_COPIED_ELEMENTS = 64  # outer values up to this size are copied into an If branch instead of passed


def _opsets(model: onnx.ModelProto) -> dict[str, int]:
    return {("" if d.domain == "ai.onnx" else d.domain): d.version for d in model.opset_import}


def _node_name(node: onnx.NodeProto, index: int) -> str:
    return node.name or f"{node.op_type}_{index}"


def value_info_type(value_info: onnx.ValueInfoProto) -> TensorType:
    """The TensorType of a graph input or output; unknown dims become symbols named after it."""
    tensor_type = value_info.type.tensor_type
    if not value_info.type.HasField("tensor_type"):
        raise UnsupportedOpError({("", f"input of non-tensor type ({value_info.name})", 0): [value_info.name]})
    try:
        dtype = numpy_dtype(tensor_type.elem_type)
    except ValueError as error:
        raise ModelLoadError(f"input {value_info.name!r}: {error}") from None
    dims = []
    for axis, dim in enumerate(tensor_type.shape.dim):
        if dim.HasField("dim_value"):
            dims.append(dim.dim_value)
        else:
            dims.append(make_symbol(dim.dim_param or f"{value_info.name}_dim{axis}"))
    return TensorType(dtype, dims)


def _is_constant_node(node: onnx.NodeProto) -> bool:
    return node.op_type == "Constant" and node.domain in ("", "ai.onnx")


def _subgraphs(node: onnx.NodeProto) -> list[onnx.GraphProto]:
    return [a.g for a in node.attribute if a.type == onnx.AttributeProto.GRAPH]


def _supported(node: onnx.NodeProto, opsets: dict[str, int]) -> bool:
    return lookup_op(node.domain, node.op_type, opsets.get(node.domain, 1)) is not None or decomposes(node)


def _unsupported_inside(graph: onnx.GraphProto, opsets: dict[str, int]) -> list[onnx.NodeProto]:
    """The nodes of ``graph`` and of its subgraphs (If branches, Loop bodies) that sdflow has no op for."""
    found = []
    for node in graph.node:
        if _is_constant_node(node):
            continue
        if not _supported(node, opsets):
            found.append(node)
        else:
            for subgraph in _subgraphs(node):
                found += _unsupported_inside(subgraph, opsets)
    return found


def unsupported_node_indices(model: onnx.ModelProto) -> list[int]:
    """Positions in ``model.graph.node`` of the nodes sdflow has no op for, or whose subgraphs hold one."""
    opsets = _opsets(model)
    return [index for index, node in enumerate(model.graph.node)
            if not _is_constant_node(node) and (
                not _supported(node, opsets) or any(_unsupported_inside(g, opsets) for g in _subgraphs(node)))]


def unsupported_element_types(model: onnx.ModelProto) -> dict[str, list[str]]:
    """ONNX element type name -> the tensors (inputs, outputs, weights, intermediates) of that type sdflow has no
    native type for (bfloat16, float8, int4, strings, ...)."""
    graph = model.graph
    typed = [(v.name, v.type.tensor_type.elem_type) for v in (*graph.input, *graph.output, *graph.value_info)
             if v.type.HasField("tensor_type")] + [(i.name, i.data_type) for i in graph.initializer]
    found: dict[str, list[str]] = {}
    for name, elem_type in typed:
        try:
            numpy_dtype(elem_type)
        except ValueError:
            found.setdefault(onnx.TensorProto.DataType.Name(elem_type), [])
            if name not in found[onnx.TensorProto.DataType.Name(elem_type)]:
                found[onnx.TensorProto.DataType.Name(elem_type)].append(name)
    return found


def unsupported_nodes(model: onnx.ModelProto, skip=()) -> dict[tuple[str, str, int], list[str]]:
    """(domain, op_type, opset) -> node names, for every node sdflow has no op for (inside subgraphs too), but
    the top-level nodes at the positions in ``skip``."""
    opsets = _opsets(model)
    missing: dict[tuple[str, str, int], list[str]] = {}
    skip = set(skip)
    for index, node in enumerate(model.graph.node):
        if _is_constant_node(node) or index in skip:
            continue
        if not _supported(node, opsets):
            found = [(node, _node_name(node, index))]
        else:
            found = [(n, n.name or n.op_type) for g in _subgraphs(node) for n in _unsupported_inside(g, opsets)]
        for unsupported, name in found:
            missing.setdefault((unsupported.domain, unsupported.op_type, opsets.get(unsupported.domain, 1)),
                               []).append(name)
    return missing


def node_reads(node: onnx.NodeProto) -> list[str]:
    """Every tensor ``node`` reads: its inputs, and the enclosing scope's values its subgraphs read."""
    return list(dict.fromkeys([n for n in node.input if n] + [n for g in _subgraphs(node) for n in _outer_names(g)]))


def outer_names(graph: onnx.GraphProto) -> list[str]:
    """The names a subgraph reads from its enclosing scope."""
    return _outer_names(graph)


def _outer_names(graph: onnx.GraphProto) -> list[str]:
    """The names ``graph`` (and its own subgraphs) read but do not define: values of the enclosing scope."""
    defined = {i.name for i in graph.input} | {i.name for i in graph.initializer}
    read = []
    for node in graph.node:
        names = list(node.input) + [n for g in _subgraphs(node) for n in _outer_names(g)]
        read += [n for n in names if n and n not in defined and n not in read]
        defined.update(node.output)
    read += [o.name for o in graph.output if o.name not in defined and o.name not in read]
    return read


def _connectors(formals, count: int) -> list[str]:
    names = []
    for i in range(count):
        if i < len(formals) and formals[i].option != _VARIADIC:
            names.append(formals[i].name)
        else:
            names.append(f"{formals[-1].name}_{i - len(formals) + 1}")
    return names


def _constant_value(node: onnx.NodeProto) -> np.ndarray:
    attribute = node.attribute[0]
    if attribute.name == "value":
        return onnx.numpy_helper.to_array(attribute.t)
    scalars = {"value_float": np.float32, "value_int": np.int64}
    lists = {"value_floats": np.float32, "value_ints": np.int64}
    value = onnx.helper.get_attribute_value(attribute)
    if attribute.name in scalars:
        return np.array(value, dtype=scalars[attribute.name])
    if attribute.name in lists:
        return np.array(list(value), dtype=lists[attribute.name])
    raise UnsupportedOpError({("", f"Constant[{attribute.name}]", 0): [node.name]})


class _Importer:
    def __init__(self, graph: onnx.GraphProto, opsets: dict[str, int], name: str | None):
        self.onnx_graph = graph
        self.opsets = opsets
        self.graph = Graph.empty(name or graph.name or "model")
        self.tensors: dict[str, str] = {}  # ONNX name -> IR tensor name
        self.values: dict[str, np.ndarray] = {}  # IR tensor -> compile-time value

    def run(self) -> Graph:
        initializers = {i.name for i in self.onnx_graph.initializer}
        for value_info in self.onnx_graph.input:
            if value_info.name not in initializers and value_info.name not in self.tensors:  # (a body's formals)
                self.tensors[value_info.name] = self.graph.add_input(value_info.name, value_info_type(value_info))
        for initializer in self.onnx_graph.initializer:
            self._constant(initializer.name, onnx.numpy_helper.to_array(initializer))
        self._nodes(self.onnx_graph)
        for output in self.onnx_graph.output:
            self._output(output.name)
        return self.graph

    def _nodes(self, graph: onnx.GraphProto) -> None:
        for index, node in enumerate(graph.node):
            if _is_constant_node(node):
                self._constant(node.output[0], _constant_value(node))
            elif node.op_type == "If" and node.domain in ("", "ai.onnx"):
                self._if(node, index)
            elif node.op_type == "Loop" and node.domain in ("", "ai.onnx"):
                self._loop(node, index)
            elif node.op_type == "Scan" and node.domain in ("", "ai.onnx"):
                self._scan(node, index)
            elif decomposes(node):
                self._decomposed(node, index)
            else:
                self._op(node, index)

    def _decomposed(self, proto: onnx.NodeProto, index: int) -> None:
        """``proto`` as the default-domain nodes that stand for it (frontends/onnx/decompose.py), each named
        ``<node>/<op>_<k>`` so that errors still point at the model's node."""
        name = _node_name(proto, index)
        counter = iter(range(1 << 30))

        def fresh(hint: str) -> str:
            return f"{name}/{hint}_{next(counter)}"

        def rank_of(onnx_name: str) -> int:
            return self.graph.tensor_type(self.tensors[onnx_name]).rank

        def value_of(onnx_name: str):
            value = self.values.get(self.tensors[onnx_name]) if onnx_name in self.tensors else None
            return None if value is None or np.asarray(value).dtype == object else np.asarray(value)

        try:
            parts = decompose(proto, fresh, rank_of, self.opsets.get("", 1), value_of)
        except ShapeInferenceError as error:
            raise ShapeInferenceError(f"node {name!r} ({proto.domain or 'ai.onnx'}::{proto.op_type}): {error}") \
                from None
        for k, part in enumerate(parts):
            part.name = f"{name}/{part.op_type}_{k}"
            if _is_constant_node(part):
                self._constant(part.output[0], _constant_value(part))
            else:
                self._op(part, index)

    def _if(self, proto: onnx.NodeProto, index: int) -> None:
        """A condition known at compile time inlines its branch; else the node keeps both branches as graphs
        of their own, whose inputs are the outer tensors they read (outer constants and known values are
        copied into them instead)."""
        branches = {a.name: a.g for a in proto.attribute}
        cond = self.values.get(self.tensors[proto.input[0]])
        if cond is not None and np.size(cond) == 1 and not isinstance(np.asarray(cond).ravel()[0], sympy.Basic):
            taken = branches[BRANCHES[0] if bool(np.asarray(cond).ravel()[0]) else BRANCHES[1]]
            for initializer in taken.initializer:
                self._constant(initializer.name, onnx.numpy_helper.to_array(initializer))
            self._nodes(taken)
            for outer, inner in zip(proto.output, taken.output):
                if outer:
                    self.tensors[outer] = self.tensors[inner.name]
                    if self.tensors[inner.name] in self.values:
                        self.values[self.tensors[outer]] = self.values[self.tensors[inner.name]]
            return
        reads = {b: [n for n in _outer_names(branches[b]) if n in self.tensors] for b in BRANCHES}
        passed = list(dict.fromkeys(n for b in BRANCHES for n in reads[b] if not self._copyable(n)))
        spec = lookup_op(proto.domain, proto.op_type, self.opsets.get(proto.domain, 1))
        graphs = {b: serialise_branch(self._branch(branches[b], passed, reads[b], f"{_node_name(proto, index)}_{b}"))
                  for b in BRANCHES}
        node = spec.node_class(_node_name(proto, index), inputs=["cond"] + [f"outer_{i}" for i in range(len(passed))],
                               outputs=[f"outputs_{i}" if t else "" for i, t in enumerate(proto.output)],
                               opset=self.opsets.get("", 1), **graphs)
        self._add(node, [proto.input[0]] + passed, list(proto.output))

    def _loop(self, proto: onnx.NodeProto, index: int) -> None:
        """The body's formal inputs: the iteration number, the condition and the loop-carried values (typed as
        the values the loop starts from)."""
        carried = list(proto.input[2:])
        formal = [("iteration", TensorType(np.int64, [])), ("condition", TensorType(np.bool_, []))] + [
            (f"carried_{k}", self.graph.tensor_type(self.tensors[name])) for k, name in enumerate(carried)]
        inputs = ["M" if proto.input[0] else "", "cond" if len(proto.input) > 1 and proto.input[1] else ""]
        outputs = [(f"v_final_{k}" if k < len(carried) else f"scan_{k - len(carried)}") if t else ""
                   for k, t in enumerate(proto.output)]
        self._with_body(proto, index, formal, inputs + [f"carried_{k}" for k in range(len(carried))], outputs,
                        list(proto.input[:2]) + [""] * (2 - len(proto.input[:2])) + carried)

    def _scan(self, proto: onnx.NodeProto, index: int) -> None:
        """The body's formal inputs: the states (typed as the initial ones) and one slice of each scanned input
        (its scan axis removed)."""
        attributes = {a.name: attribute_value(a) for a in proto.attribute if a.name != "body"}
        scanned = attributes["num_scan_inputs"]
        own = [self.graph.tensor_type(self.tensors[name]) for name in proto.input]
        states = len(own) - scanned
        axes = [normalize_axis(a, t.rank) for a, t in zip(attributes.get("scan_input_axes") or [0] * scanned,
                                                          own[states:])]
        formal = [(f"state_{k}", t) for k, t in enumerate(own[:states])] + [
            (f"scan_{j}", TensorType(t.dtype, [d for i, d in enumerate(t.shape) if i != a]))
            for j, (t, a) in enumerate(zip(own[states:], axes))]
        inputs = [f"initial_state_{k}" for k in range(states)] + [f"scan_input_{j}" for j in range(scanned)]
        outputs = [(f"final_state_{k}" if k < states else f"scan_output_{k - states}") if t else ""
                   for k, t in enumerate(proto.output)]
        self._with_body(proto, index, formal, inputs, outputs, list(proto.input), **attributes)

    def _with_body(self, proto: onnx.NodeProto, index: int, formal: list, inputs: list[str], outputs: list[str],
                   onnx_inputs: list[str], **attributes) -> None:
        """Adds Loop/Scan ``proto`` whose body becomes a graph of its own: ``formal`` (connector, type) for the
        body's own inputs, then the outer tensors it reads (passed to the node after ``inputs``, connectors
        ``outer_<k>``, or copied in when small and known)."""
        body = next(a.g for a in proto.attribute if a.name == "body")
        reads = [n for n in _outer_names(body) if n in self.tensors]
        passed = [n for n in reads if not self._copyable(n)]
        graph = self._branch(body, passed, reads, f"{_node_name(proto, index)}_body",
                             [(value.name, connector, ttype) for value, (connector, ttype) in zip(body.input, formal)])
        spec = lookup_op(proto.domain, proto.op_type, self.opsets.get(proto.domain, 1))
        node = spec.node_class(_node_name(proto, index), inputs=inputs + [f"outer_{k}" for k in range(len(passed))],
                               outputs=outputs, opset=self.opsets.get("", 1), body=serialise_branch(graph),
                               **attributes)
        self._add(node, onnx_inputs + passed, list(proto.output))

    def _copyable(self, onnx_name: str) -> bool:
        """Whether a branch gets an outer tensor as a copy of its value: small known values (shape arithmetic,
        scalars) that the branch's ops may need at compile time. Weights are passed, never copied."""
        value = self.values.get(self.tensors[onnx_name])
        return value is not None and np.asarray(value).dtype != object and np.size(value) <= _COPIED_ELEMENTS

    def _branch(self, body: onnx.GraphProto, passed: list[str], outer: list[str], name: str,
                formal=()) -> Graph:
        """``body`` as a graph: ``formal`` (ONNX name, connector, type) its own inputs, then the ``passed`` outer
        tensors as inputs, the other ``outer`` ones it reads as constants."""
        branch = _Importer(body, self.opsets, name)
        for onnx_name, connector, ttype in formal:
            branch.tensors[onnx_name] = branch.graph.add_input(connector, ttype)
        for position, onnx_name in enumerate(passed):  # named after the If's connector that feeds it
            branch.tensors[onnx_name] = branch.graph.add_input(f"outer_{position}",
                                                               self.graph.tensor_type(self.tensors[onnx_name]))
        for onnx_name in outer:
            if onnx_name not in passed:
                branch._constant(onnx_name, np.asarray(self.values[self.tensors[onnx_name]]))
        return branch.run()

    def _constant(self, onnx_name: str, value: np.ndarray) -> None:
        name = self.graph.add_constant(onnx_name, value)
        self.tensors[onnx_name] = name
        self.values[name] = value

    def _op(self, proto: onnx.NodeProto, index: int) -> None:
        opset = self.opsets.get(proto.domain, 1)
        spec = lookup_op(proto.domain, proto.op_type, opset)
        schema = onnx.defs.get_schema(proto.op_type, opset, proto.domain)
        in_connectors = _connectors(schema.inputs, len(proto.input))
        out_connectors = _connectors(schema.outputs, len(proto.output))
        # Defaults of the node's own opset, which can differ from the newest schema's.
        attributes = {name: attribute_value(a.default_value) for name, a in schema.attributes.items()
                      if a.default_value is not None and a.default_value.name}
        attributes.update({a.name: attribute_value(a) for a in proto.attribute})
        node = spec.node_class(_node_name(proto, index),
                               inputs=[c if t else "" for c, t in zip(in_connectors, proto.input)],
                               outputs=[c if t else "" for c, t in zip(out_connectors, proto.output)],
                               opset=opset, **attributes)
        self._add(node, list(proto.input), list(proto.output))

    def _add(self, node, onnx_inputs: list[str], onnx_outputs: list[str]) -> None:
        inputs = [self.tensors[t] if t else None for t in onnx_inputs]
        types = [self.graph.tensor_type(t) if t else None for t in inputs]
        values = [self.values.get(t) if t else None for t in inputs]
        out_types = infer_node(node, types, values)
        outputs = [self.graph.add_tensor(t, ttype) if t else None for t, ttype in zip(onnx_outputs, out_types)]
        self.graph.add_op(node, inputs, outputs)
        for onnx_name, tensor in zip(onnx_outputs, outputs):
            if tensor:
                self.tensors[onnx_name] = tensor
        known = semantics_of(node).known_values(node, types, values)
        for tensor, value in zip(outputs, known or []):
            if tensor and value is not None:
                self.values[tensor] = value

    def _output(self, onnx_name: str) -> None:
        tensor = self.tensors[onnx_name]
        if tensor in self.graph.sdfg.arg_names or self.graph.is_constant(tensor):
            # A graph output must be written by an op: copy inputs/constants/repeated outputs through Identity.
            spec = lookup_op("", "Identity", 13)
            copy = self.graph.add_tensor(onnx_name, self.graph.tensor_type(tensor))
            self.graph.add_op(spec.node_class(f"output_{copy}", inputs=["input"], outputs=["output"], opset=13),
                              [tensor], [copy])
            tensor = copy
        self.graph.mark_output(tensor, onnx_name)


def import_model(model, name: str | None = None) -> Graph:
    """Loads ``model`` (path, bytes or ModelProto) into an IR graph; lists every unsupported op at once."""
    proto = load_model(model)
    missing = unsupported_nodes(proto)
    if missing:
        raise UnsupportedOpError(missing)
    return _Importer(proto.graph, _opsets(proto), name or proto.graph.name).run()
