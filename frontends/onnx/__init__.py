"""The ONNX frontend: load, check, upgrade and import an ONNX model into the IR."""
from .importer import (import_model, node_reads, outer_names, unsupported_element_types, unsupported_node_indices,
                       unsupported_nodes, value_info_type)
from .loader import default_opset, load_model
from .value_inputs import value_dependent_inputs

__all__ = ["import_model", "node_reads", "outer_names", "unsupported_nodes", "unsupported_node_indices", "unsupported_element_types",
           "value_info_type", "load_model", "default_opset", "value_dependent_inputs"]
