"""The reviewed list of ONNX node test cases that ``sdflow conformance`` excludes, with the reason category of
each. Excluded cases count as not passing. Most exclusions follow from what a case's model uses (detected
below); the few named cases are in ``NAMED``. Change this file by review, not to make numbers look better."""
from __future__ import annotations

import re

import onnx

__all__ = ["exclusion_reason", "CATEGORIES"]

CATEGORIES = {
    "string tensors": "sdflow compiles numeric tensors; string tensors have no native representation",
    "sequence/optional/map types": "graph inputs or outputs that are not tensors (sequences, optionals, maps)",
    "training-only ops": "ops of the ai.onnx.preview.training domain (optimizers, gradients)",
    "random outputs": "outputs drawn from a random generator; the expected values come from one particular one",
}

_RANDOM_OPS = {"Bernoulli", "RandomNormal", "RandomNormalLike", "RandomUniform", "RandomUniformLike", "Multinomial"}

# Cases excluded by name: (regular expression, category).
NAMED = [
    (r"^test_training_dropout", "random outputs"),  # Dropout with training_mode=True draws its mask
]


def exclusion_reason(name: str, model: onnx.ModelProto) -> str | None:
    """The category that excludes case ``name``, or None when it counts."""
    for pattern, category in NAMED:
        if re.search(pattern, name):
            return category
    values = list(model.graph.input) + list(model.graph.output) + list(model.graph.value_info)
    if any(v.type.WhichOneof("value") not in ("tensor_type", None) for v in values):
        return "sequence/optional/map types"
    elem_types = {v.type.tensor_type.elem_type for v in values if v.type.HasField("tensor_type")}
    elem_types |= {i.data_type for i in model.graph.initializer}
    if onnx.TensorProto.STRING in elem_types:
        return "string tensors"
    nodes = list(model.graph.node) + [n for f in model.functions for n in f.node]
    if any(n.domain == "ai.onnx.preview.training" for n in nodes):
        return "training-only ops"
    if any(n.op_type in _RANDOM_OPS for n in nodes):
        return "random outputs"
    return None
