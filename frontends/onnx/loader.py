"""Reading an ONNX model: from a path (with external data), bytes or a ModelProto; checker, opset upgrade,
ONNX shape inference. Every failure is a ModelLoadError that says what is wrong with the file."""
from __future__ import annotations

import os
import pathlib

import onnx
import onnx.external_data_helper
import onnx.inliner
from google.protobuf.message import DecodeError

from sdflow.ir import MIN_OPSET, ModelLoadError

__all__ = ["load_model", "default_opset"]


def default_opset(model: onnx.ModelProto) -> int:
    for entry in model.opset_import:
        if entry.domain in ("", "ai.onnx"):
            return entry.version
    return 1


def _read(model) -> tuple[onnx.ModelProto, str, pathlib.Path | None]:
    if isinstance(model, onnx.ModelProto):
        return model, "<ModelProto>", None
    if isinstance(model, (bytes, bytearray)):
        try:
            return onnx.load_from_string(bytes(model)), "<bytes>", None
        except (DecodeError, RuntimeWarning, ValueError) as error:
            raise ModelLoadError(f"the bytes are not a valid ONNX model ({error})") from None
    if isinstance(model, (str, os.PathLike)):
        path = pathlib.Path(model)
        if not path.is_file():
            raise ModelLoadError(f"{path}: no such model file")
        try:
            return onnx.load(str(path)), str(path), path
        except (DecodeError, RuntimeWarning, ValueError, OSError) as error:
            raise ModelLoadError(f"{path}: not a valid ONNX model, truncated or corrupt ({error})") from None
    raise ModelLoadError(f"cannot load a model from a {type(model).__name__}; pass a path, bytes or a ModelProto")


def _fill_output_shapes(proto: onnx.ModelProto) -> bool:
    """Graph outputs declared without a shape (ONNX Runtime runs such models; the checker refuses them) take the
    shape ONNX shape inference gives them. Returns whether any output was filled in."""
    missing = [o for o in proto.graph.output
               if o.type.HasField("tensor_type") and not o.type.tensor_type.HasField("shape")]
    if not missing:
        return False
    try:
        inferred = {o.name: o for o in onnx.shape_inference.infer_shapes(proto).graph.output}
    except Exception:  # the checker below says what is wrong with the model
        return False
    for output in missing:
        if inferred[output.name].type.tensor_type.HasField("shape"):
            output.type.CopyFrom(inferred[output.name].type)
    return True


def _initializers_as_constants(proto: onnx.ModelProto) -> bool:
    """Before IR version 4 every initializer had to be a graph input; files that leave some out (ONNX Runtime's own
    sample ``mul_1.onnx``) run in ONNX Runtime, which reads them as constants, as IR 4 defines them. Such a model
    is read as IR 4. Returns whether it was."""
    inputs = {i.name for i in proto.graph.input}
    if proto.ir_version >= 4 or all(i.name in inputs for i in proto.graph.initializer):
        return False
    proto.ir_version = 4
    return True


def load_model(model) -> onnx.ModelProto:
    """A checked, opset-upgraded, shape-inferred copy of ``model``."""
    proto, where, path = _read(model)
    if not proto.graph.node and not proto.graph.output:
        raise ModelLoadError(f"{where}: the model has an empty graph (is the file truncated?)")
    try:
        # From a path, the checker resolves external data files next to the model; afterwards the loaded
        # weights are embedded so that every later step works on the in-memory model alone.
        if _fill_output_shapes(proto) | _initializers_as_constants(proto):
            onnx.external_data_helper.convert_model_from_external_data(proto)
            path = None
        onnx.checker.check_model(str(path) if path is not None else proto)
        onnx.external_data_helper.convert_model_from_external_data(proto)
    except onnx.checker.ValidationError as error:
        message = " ".join(line.strip() for line in str(error).strip().splitlines() if line.strip())
        raise ModelLoadError(f"{where}: the model fails the ONNX checker: {message}") from None
    # (a model of other domains only, e.g. ai.onnx.ml, has no default-domain op to convert: its ops are listed as
    # unsupported instead of failing here)
    if default_opset(proto) < MIN_OPSET and any(n.domain in ("", "ai.onnx") for n in proto.graph.node):
        try:
            proto = onnx.version_converter.convert_version(proto, MIN_OPSET)
        except Exception as error:  # the converter raises bare RuntimeError/IndexError
            raise ModelLoadError(f"{where}: cannot convert opset {default_opset(proto)} to {MIN_OPSET}: {error}") \
                from None
    try:
        proto = onnx.shape_inference.infer_shapes(proto, data_prop=True)
        proto = inline_schema_functions(proto)
    except onnx.shape_inference.InferenceError as error:
        raise ModelLoadError(f"{where}: ONNX shape inference failed: {error}") from None
    return proto


_INLINED_DOMAIN = "sdflow.inlined"


def _schema_function(node: onnx.NodeProto, opset: int, types: dict) -> onnx.FunctionProto | None:
    """The function body ONNX defines for ``node``'s op at ``opset`` (context-dependent ones built for the
    node's attributes and input types), or None."""
    try:
        schema = onnx.defs.get_schema(node.op_type, opset, "")
    except onnx.defs.SchemaError:
        return None
    body = None
    versions = [v for v in schema.function_opset_versions if v <= opset]
    if schema.has_function and versions:
        found = schema.get_function_with_opset_version(max(versions))
        body = onnx.FunctionProto()
        body.ParseFromString(found if isinstance(found, bytes) else found.SerializeToString())
        return body
    versions = [v for v in schema.context_dependent_function_opset_versions if v <= opset]
    if schema.has_context_dependent_function and versions:
        if any(name and name not in types for name in node.input):
            return None
        serialized = schema.get_context_dependent_function_with_opset_version(
            max(versions), node.SerializeToString(),
            [types[name].SerializeToString() if name else onnx.TypeProto().SerializeToString() for name in node.input])
        if serialized:
            body = onnx.FunctionProto()
            body.ParseFromString(serialized)
    return body


def inline_schema_functions(proto: onnx.ModelProto) -> onnx.ModelProto:
    """Nodes of the default domain that sdflow has no op for, but that ONNX defines as a function of other ops
    (HannWindow, LinearAttention, ...), replaced by that function's nodes, as ONNX Runtime expands them."""
    from sdflow.ir.registry import lookup_op
    opset = default_opset(proto)
    graph = proto.graph
    types = {v.name: v.type for v in (*graph.input, *graph.value_info, *graph.output)}
    for init in graph.initializer:
        types.setdefault(init.name, onnx.helper.make_tensor_type_proto(init.data_type, list(init.dims)))
    functions = []
    for node in graph.node:
        if node.domain not in ("", "ai.onnx") or lookup_op("", node.op_type, opset) is not None:
            continue
        body = _schema_function(node, opset, types)
        if body is None or not body.node:
            continue
        # The body refers to attributes by name: unset ones take the schema's defaults first.
        present = {a.name for a in node.attribute}
        for name, attribute in onnx.defs.get_schema(node.op_type, opset, "").attributes.items():
            if name not in present and attribute.default_value is not None and attribute.default_value.name:
                node.attribute.append(attribute.default_value)
        body.domain, body.name = _INLINED_DOMAIN, f"{node.op_type}_{len(functions)}"
        node.domain, node.op_type = _INLINED_DOMAIN, body.name
        functions.append(body)
    if not functions:
        return proto
    proto.functions.extend(functions)
    proto.opset_import.append(onnx.helper.make_opsetid(_INLINED_DOMAIN, 1))
    proto = onnx.inliner.inline_local_functions(proto)
    del proto.functions[:]
    kept = [o for o in proto.opset_import if o.domain != _INLINED_DOMAIN]
    del proto.opset_import[:]
    proto.opset_import.extend(kept)
    return onnx.shape_inference.infer_shapes(proto, data_prop=True)
