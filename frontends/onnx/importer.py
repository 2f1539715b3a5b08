"""ONNX graph -> IR graph: every node becomes an op node, initializers and Constant nodes become graph-owned
constants, dim_params and unknown dims become symbols."""
from __future__ import annotations

import numpy as np
import onnx

from sdflow.ir import Graph, ModelLoadError, TensorType, UnsupportedOpError, infer_node, lookup_op
from sdflow.ir.nodes import attribute_value
from sdflow.ir.semantics import semantics_of
from sdflow.ir.types import make_symbol, numpy_dtype
from .loader import load_model

__all__ = ["import_model", "unsupported_nodes", "unsupported_node_indices", "unsupported_element_types",
           "value_info_type"]

_VARIADIC = onnx.defs.OpSchema.FormalParameterOption.Variadic


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


def unsupported_node_indices(model: onnx.ModelProto) -> list[int]:
    """Positions in ``model.graph.node`` of the nodes sdflow has no op for."""
    opsets = _opsets(model)
    return [index for index, node in enumerate(model.graph.node)
            if not (node.op_type == "Constant" and node.domain in ("", "ai.onnx"))
            and lookup_op(node.domain, node.op_type, opsets.get(node.domain, 1)) is None]


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


def unsupported_nodes(model: onnx.ModelProto) -> dict[tuple[str, str, int], list[str]]:
    """(domain, op_type, opset) -> node names, for every node sdflow has no op for."""
    opsets = _opsets(model)
    missing: dict[tuple[str, str, int], list[str]] = {}
    for index in unsupported_node_indices(model):
        node = model.graph.node[index]
        missing.setdefault((node.domain, node.op_type, opsets.get(node.domain, 1)), []).append(
            _node_name(node, index))
    return missing


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
    def __init__(self, model: onnx.ModelProto, name: str | None):
        self.model = model
        self.opsets = _opsets(model)
        self.graph = Graph.empty(name or model.graph.name or "model")
        self.tensors: dict[str, str] = {}  # ONNX name -> IR tensor name
        self.values: dict[str, np.ndarray] = {}  # IR tensor -> compile-time value

    def run(self) -> Graph:
        initializers = {i.name for i in self.model.graph.initializer}
        for value_info in self.model.graph.input:
            if value_info.name not in initializers:
                self.tensors[value_info.name] = self.graph.add_input(value_info.name, value_info_type(value_info))
        for initializer in self.model.graph.initializer:
            self._constant(initializer.name, onnx.numpy_helper.to_array(initializer))
        for index, node in enumerate(self.model.graph.node):
            if node.op_type == "Constant" and node.domain in ("", "ai.onnx"):
                self._constant(node.output[0], _constant_value(node))
            else:
                self._op(node, index)
        for output in self.model.graph.output:
            self._output(output.name)
        return self.graph

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
        inputs = [self.tensors[t] if t else None for t in proto.input]
        types = [self.graph.tensor_type(t) if t else None for t in inputs]
        values = [self.values.get(t) if t else None for t in inputs]
        out_types = infer_node(node, types, values)
        outputs = [self.graph.add_tensor(t, ttype) if t else None for t, ttype in zip(proto.output, out_types)]
        self.graph.add_op(node, inputs, outputs)
        for onnx_name, tensor in zip(proto.output, outputs):
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
    return _Importer(proto, name).run()
