"""Op nodes: DaCe library nodes with ONNX semantics, one class per ONNX op type.

Classes are generated from the ONNX schemas (one DaCe property per ONNX attribute) and named
``Onnx<OpType>`` in this module, so a saved ``.sdfg`` finds them again by ``classpath``
(``sdflow.ir.nodes.OnnxAdd``) in any process that has DaCe and sdflow installed. Expansions are registered by
``codegen``; the IR knows none, but loads the modules named under the ``sdflow.expansions`` entry-point group
on the first expansion, so a graph opened outside sdflow's build (DaCe's VS Code extension) still expands.
"""
from __future__ import annotations

import functools
import importlib.metadata
import json

import dace
import dace.library
import numpy as np
import onnx
from dace import properties
from dace.sdfg.nodes import LibraryNode

from .errors import ShapeInferenceError
from .types import to_dim

__all__ = ["OpNode", "node_class_for", "attribute_value", "EXTENSION_ATTRIBUTES"]

_ATTR = onnx.defs.OpSchema.AttrType
_RESERVED = {"name", "label", "implementation", "schedule", "debuginfo", "instrument", "location", "environments",
             "in_connectors", "out_connectors", "guid", "domain", "opset"}


@properties.make_properties
class OpNode(LibraryNode):
    """Base of every sdflow op node. Attributes are properties; ``onnx_inputs`` / ``onnx_outputs`` map each
    ONNX position to its connector name ("" where an optional input is absent)."""

    implementations = {}
    default_implementation = None
    op_type: str = ""
    domain_name: str = ""
    attribute_names: dict = {}  # ONNX attribute name -> property name

    opset = properties.Property(dtype=int, default=0, desc="Opset version of the op's domain")
    onnx_inputs = properties.ListProperty(element_type=str, default=[], desc="Connector per ONNX input position")
    onnx_outputs = properties.ListProperty(element_type=str, default=[], desc="Connector per ONNX output position")
    static_inputs = properties.DictProperty(key_type=str, value_type=str, default={},
                                            desc="ONNX input position -> its compile-time value (JSON list of "
                                            "integers or symbolic expressions), set where the value is known")

    def __init__(self, name, inputs=(), outputs=(), opset=0, **attributes):
        inputs, outputs = list(inputs), list(outputs)
        super().__init__(name, inputs=dict.fromkeys(c for c in inputs if c),
                         outputs=dict.fromkeys(c for c in outputs if c))
        self.opset = opset
        self.onnx_inputs = inputs
        self.onnx_outputs = outputs
        for key, value in attributes.items():
            if key not in self.attribute_names:
                raise ShapeInferenceError(f"node {name!r}: {self.op_type} has no attribute {key!r}")
            setattr(self, self.attribute_names[key], value)

    @property
    def attributes(self) -> dict:
        """ONNX attribute name -> value, for the attributes that are set."""
        result = {}
        for onnx_name, prop_name in self.attribute_names.items():
            value = getattr(self, prop_name)
            if value is not None:
                result[onnx_name] = value
        return result

    def static_input(self, position: int):
        """The compile-time value of input ``position`` as a numpy array of its element type (sympy objects
        where symbolic), or None."""
        text = self.static_inputs.get(str(position))
        if text is None:
            return None
        return _parse_static(text).copy()

    def set_static_input(self, position: int, value) -> None:
        values = dict(self.static_inputs)
        value = np.asarray(value)
        if value.dtype == bool:  # stored as 0/1 (a Compress condition), which reads back as integers
            value = value.astype(np.int64)
        values[str(position)] = json.dumps({"dtype": value.dtype.name,
                                            "values": [str(v) for v in value.ravel().tolist()]})
        self.static_inputs = values

    def attr(self, name: str, default=None):
        value = getattr(self, self.attribute_names[name])
        return default if value is None else value

    def expand(self, *args, **kwargs):
        load_expansions()
        return super().expand(*args, **kwargs)


@functools.lru_cache(maxsize=4096)
def _parse_static(text: str) -> np.ndarray:
    """A recorded compile-time value (JSON text) as an array; parsed once per distinct text (symbolic entries go
    through sympy's parser, which is slow)."""
    entry = json.loads(text)
    if isinstance(entry, list):  # graphs saved before element types were recorded
        entry = {"dtype": "int64", "values": entry}
    if entry["dtype"].startswith("float"):
        return np.array([float(v) for v in entry["values"]], dtype=entry["dtype"])
    items = [to_dim(v) for v in entry["values"]]
    if all(isinstance(v, int) for v in items):
        return np.array(items, dtype=entry["dtype"] if entry["dtype"] != "object" else np.int64)
    return np.array(items, dtype=object)


_EXPANSIONS_LOADED = False


def load_expansions() -> None:
    """Imports every module registered under the ``sdflow.expansions`` entry-point group (once)."""
    global _EXPANSIONS_LOADED
    if not _EXPANSIONS_LOADED:
        for entry_point in importlib.metadata.entry_points(group="sdflow.expansions"):
            entry_point.load()
        _EXPANSIONS_LOADED = True


def attribute_value(attribute: onnx.AttributeProto):
    """An ONNX attribute as a plain Python value that fits its DaCe property (tensors become JSON text)."""
    value = onnx.helper.get_attribute_value(attribute)
    if attribute.type == onnx.AttributeProto.TENSOR:
        array = onnx.numpy_helper.to_array(value)
        return json.dumps({"dtype": array.dtype.name, "shape": list(array.shape), "data": array.ravel().tolist()})
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, list):
        return [v.decode() if isinstance(v, bytes) else v for v in value]
    return value


def decode_tensor_attribute(text: str) -> np.ndarray:
    obj = json.loads(text)
    return np.array(obj["data"], dtype=obj["dtype"]).reshape(obj["shape"])


def _property_for(attr: onnx.defs.OpSchema.Attribute) -> properties.Property:
    desc = (attr.description or "").strip().split("\n")[0][:200]
    default = None
    if attr.default_value is not None and attr.default_value.name:
        default = attribute_value(attr.default_value)
    kinds = {_ATTR.INT: int, _ATTR.FLOAT: float, _ATTR.STRING: str, _ATTR.TENSOR: str}
    lists = {_ATTR.INTS: int, _ATTR.FLOATS: float, _ATTR.STRINGS: str}
    if attr.type in kinds:
        return properties.Property(dtype=kinds[attr.type], default=default, allow_none=True, desc=desc)
    if attr.type in lists:
        return properties.ListProperty(element_type=lists[attr.type], default=default, allow_none=True, desc=desc)
    return properties.Property(dtype=str, default=None, allow_none=True, desc=desc + " (unsupported attribute type)")


_CLASSES: dict[tuple[str, str], type] = {}

# Attributes sdflow adds to ONNX op types, beyond their schemas: set by passes on the ops they create, read by the
# lowering and by the op's numpy reference (ir/ops); the ONNX reference evaluator never sees them (ops/_base keeps
# only the schema's attributes). (domain, op type) -> {attribute: (type, description)}.
EXTENSION_ATTRIBUTES: dict[tuple[str, str], dict[str, tuple[type, str]]] = {
    ("", "Attention"): {
        "nan_probabilities_to_zero": (int, "sdflow: 1 = a probability that is NaN counts as 0 (PyTorch's "
                                      "scaled_dot_product_attention export: Where(IsNaN(P), 0, P)); set by "
                                      "fuse-attention"),
    },
    ("", "DequantizeLinear"): {
        "code_bits": (int, "sdflow: 3 = the (uint4) codes are all below 8, so the product's kernel packs them in 3 "
                      "bits (codegen/kernels/nbits.h); set by fuse-dequantize-matmul"),
    },
    ("ai.sdflow", "QuantizedMatMul"): {
        "per_row": (int, "1 = A is quantized over each row (its last axis), 0 = over the whole tensor (ONNX "
                    "Runtime's DynamicQuantizeMatMul); not read when a_scale is given"),
    },
}


def node_class_for(domain: str, op_type: str, schemas: list[onnx.defs.OpSchema]) -> type:
    """The node class of an op type, made once from the union of its schemas' attributes."""
    key = (domain, op_type)
    if key in _CLASSES:
        return _CLASSES[key]
    namespace = {"op_type": op_type, "domain_name": domain, "implementations": {}, "default_implementation": None,
                 "__module__": __name__, "__doc__": f"ONNX {domain or 'ai.onnx'}::{op_type} as an sdflow op node."}
    attribute_names = {}
    for schema in schemas:
        for attr_name, attr in schema.attributes.items():
            if attr_name in attribute_names:
                continue
            prop_name = f"attr_{attr_name}" if attr_name in _RESERVED else attr_name
            attribute_names[attr_name] = prop_name
            namespace[prop_name] = _property_for(attr)
    for attr_name, (kind, desc) in EXTENSION_ATTRIBUTES.get(key, {}).items():
        attribute_names[attr_name] = attr_name
        namespace[attr_name] = properties.Property(dtype=kind, default=None, allow_none=True, desc=desc)
    namespace["attribute_names"] = attribute_names
    prefix = "Onnx" if not domain else "".join(p.capitalize() for p in domain.split(".")) + "_"
    class_name = prefix + op_type
    cls = dace.library.node(type(class_name, (OpNode, ), namespace))
    cls.__qualname__ = class_name
    globals()[class_name] = cls
    _CLASSES[key] = cls
    return cls
