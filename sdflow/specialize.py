"""Models whose shape-like inputs arrive at run time (a Reshape's shape, a Slice's starts, a reduction's axes fed
by graph inputs): ``sdflow.compile(model, value_inputs="specialize")`` returns a ``ValueSpecializedModel``, which
compiles one build per distinct set of those inputs' values (they become constants) and keeps each build."""
from __future__ import annotations

import numpy as np
import onnx
from onnx import numpy_helper

from sdflow.codegen.runtime import bind_inputs

__all__ = ["ValueSpecializedModel", "with_constant_inputs"]


def with_constant_inputs(model: onnx.ModelProto, values: dict[str, np.ndarray]) -> onnx.ModelProto:
    """A copy of ``model`` where the graph inputs named in ``values`` are initializers holding those values."""
    specialized = onnx.ModelProto()
    specialized.CopyFrom(model)
    kept = [i for i in specialized.graph.input if i.name not in values]
    del specialized.graph.input[:]
    specialized.graph.input.extend(kept)
    specialized.graph.initializer.extend(numpy_helper.from_array(np.asarray(v), name) for name, v in values.items())
    return specialized


class ValueSpecializedModel:
    """Callable like a ``CompiledModel``; the first call with new values of ``value_inputs`` compiles."""

    def __init__(self, model: onnx.ModelProto, value_inputs: list[str], compile_model):
        self.model = model
        self.value_inputs = list(value_inputs)
        initializers = {i.name for i in model.graph.initializer}
        self.input_names = [i.name for i in model.graph.input if i.name not in initializers]
        self.output_names = [o.name for o in model.graph.output]
        self._compile = compile_model  # ModelProto -> CompiledModel
        self.builds: dict[tuple, object] = {}

    def __repr__(self) -> str:
        return (f"<ValueSpecializedModel {self.model.graph.name} specialized on {self.value_inputs}, "
                f"{len(self.builds)} build(s)>")

    def build_for(self, *args, **kwargs):
        """The compiled model for these inputs' values (compiled now if new) and the other inputs by name."""
        given = bind_inputs(self.input_names, args, kwargs)
        values = {n: np.asarray(given.pop(n)) for n in self.value_inputs}
        key = tuple((n, v.dtype.str, v.shape, v.tobytes()) for n, v in values.items())
        if key not in self.builds:
            self.builds[key] = self._compile(with_constant_inputs(self.model, values))
        return self.builds[key], given

    def __call__(self, *args, **kwargs):
        compiled, others = self.build_for(*args, **kwargs)
        return compiled(**others)
