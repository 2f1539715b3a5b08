"""Fused (domain ``ai.sdflow``): what the fusion passes produce. A fused op runs a *program* — ONNX ops in order
over the fused op's inputs — as one kernel, so the values between its steps never travel through memory.

A program is a list of steps, each one ONNX op (type, opset, attributes, compile-time inputs) whose arguments
name the fused op's inputs (``in0``, ``in1``, ...) or earlier steps' results (``s<k>.<output>``); ``outputs``
names the values the fused op writes, in order. Its kind says how codegen schedules it:

- ``elementwise``: element-wise steps only; one pass over the output.
- ``matmul``: a MatMul (2-D weight) first, then element-wise steps (an epilogue applied to each row of the
  product; bias, activation, scaling, residual), optionally a last-axis Split into several outputs (merged Q/K/V
  projections).
- ``matmul_int8``: the same with sdflow's QuantizedMatMul (int8 weight, activations quantized at run time)
  as the product.
- ``matmul_nbits``: a DequantizeLinear of a 4-bit weight, then the MatMul by it and its epilogue (the weight is
  dequantized a slice at a time inside the kernel).
- ``conv``: a float32 Conv (1-D or 2-D) first, then element-wise steps (an epilogue applied to each output
  plane: residual, activation, clipping).
- ``rows``: element-wise steps (a prologue) then LayerNormalization or Softmax over the last axis (bias + residual
  before a LayerNorm, scale + mask before a Softmax).

The numpy reference runs the steps' own references, so a fused graph is checked against the graph it came from.
"""
from __future__ import annotations

import dataclasses
import json

import dace
import dace.library
from dace import properties

from ..errors import ShapeInferenceError
from ..nodes import OpNode
from ..registry import OpSpec, lookup_op, register_op
from ..types import TensorType
from ._base import Op
from .elementwise import ELEMENTWISE_OPS

__all__ = ["DOMAIN", "Fused", "Step", "Program", "ROW_OPS"]

DOMAIN = "ai.sdflow"
ROW_OPS = ("LayerNormalization", "Softmax")


@dataclasses.dataclass(frozen=True)
class Step:
    op_type: str
    opset: int
    attributes: dict
    static: dict  # ONNX input position (str) -> the node's recorded compile-time value (JSON text)
    connectors: tuple[tuple[str, ...], tuple[str, ...]]  # the node's onnx_inputs, onnx_outputs
    args: tuple[str | None, ...]  # value per input position (None: absent)
    results: tuple[str | None, ...]  # value name per output position (None: not used)
    domain: str = ""  # "" (ONNX), or ai.sdflow for sdflow's own ops (QuantizedMatMul)

    @classmethod
    def of(cls, node: OpNode, args, results) -> "Step":
        return cls(node.op_type, node.opset, dict(node.attributes), dict(node.static_inputs),
                   (tuple(node.onnx_inputs), tuple(node.onnx_outputs)), tuple(args), tuple(results),
                   node.domain_name or "")

    def node(self) -> OpNode:
        """A free-standing op node of this step (for its semantics, reference and C++ expression)."""
        spec = lookup_op(self.domain, self.op_type, self.opset)
        node = spec.node_class(f"step_{self.op_type}", inputs=list(self.connectors[0]),
                               outputs=list(self.connectors[1]), opset=self.opset, **self.attributes)
        node.static_inputs = dict(self.static)
        return node


@dataclasses.dataclass(frozen=True)
class Program:
    steps: tuple[Step, ...]
    outputs: tuple[str, ...]

    def to_json(self) -> str:
        return json.dumps({"steps": [dataclasses.asdict(s) for s in self.steps], "outputs": list(self.outputs)})

    @classmethod
    def from_json(cls, text: str) -> "Program":
        obj = json.loads(text)
        steps = []
        for s in obj["steps"]:
            steps.append(Step(s["op_type"], s["opset"], s["attributes"], s["static"],
                              (tuple(s["connectors"][0]), tuple(s["connectors"][1])), tuple(s["args"]),
                              tuple(s["results"]), s.get("domain", "")))
        return cls(tuple(steps), tuple(obj["outputs"]))

    @property
    def kind(self) -> str:
        types = [s.op_type for s in self.steps]
        if all(t in ELEMENTWISE_OPS for t in types):
            return "elementwise"
        epilogue = types[1:-1] if types[-1] == "Split" else types[1:]
        if types[0] == "MatMul" and all(t in ELEMENTWISE_OPS for t in epilogue):
            return "matmul"
        if types[0] == "QuantizedMatMul" and all(t in ELEMENTWISE_OPS for t in epilogue):
            return "matmul_int8"
        if (types[:2] == ["DequantizeLinear", "MatMul"] and self.steps[1].args[1] == self.steps[0].results[0]
                and all(t in ELEMENTWISE_OPS for t in epilogue[1:])):
            return "matmul_nbits"
        if types[0] == "Conv" and all(t in ELEMENTWISE_OPS for t in types[1:]):
            return "conv"
        if (types[0] == "Conv" and types.count("Conv") == 2
                and all(t in ELEMENTWISE_OPS for t in types[1:] if t != "Conv")):
            return "conv_depthwise"  # a 1x1 convolution and its epilogue, then a depthwise one and its epilogue
        if types[-1] in ROW_OPS and all(t in ELEMENTWISE_OPS for t in types[:-1]):
            return "rows"
        raise ShapeInferenceError(f"Fused: no kernel schedules the steps {'>'.join(types)}")

    def summary(self) -> str:
        return "+".join(s.op_type for s in self.steps)

    def types(self, inputs: list[TensorType | None]) -> dict[str, TensorType]:
        """The type of every value: the fused op's inputs and each step's results."""
        from ..semantics import infer_node, with_static_inputs
        known: dict[str, TensorType] = {f"in{i}": t for i, t in enumerate(inputs) if t is not None}
        for step in self.steps:
            node = step.node()
            arg_types = [known[a] if a else None for a in step.args]
            for name, ttype in zip(step.results, infer_node(node, arg_types, with_static_inputs(node, []))):
                if name:
                    known[name] = ttype
        return known


@dace.library.node
class Fused(OpNode):
    """sdflow's fused kernel: a program of ONNX ops run as one kernel (see ``sdflow.ir.ops.fused``)."""

    implementations = {}
    default_implementation = None
    op_type = "Fused"
    domain_name = DOMAIN
    attribute_names = {"kernel": "kernel"}

    kernel = properties.Property(dtype=str, default="", desc="The fused steps, for people (e.g. MatMul+Add+Gelu)")
    program = properties.Property(dtype=str, default='{"steps": [], "outputs": []}',
                                  desc="The steps as JSON (sdflow.ir.ops.fused.Program)")

    @classmethod
    def make(cls, label: str, program: Program, input_count: int) -> "Fused":
        node = cls(label, inputs=[f"in{i}" for i in range(input_count)],
                   outputs=[f"out{i}" for i in range(len(program.outputs))], opset=1)
        node.program = program.to_json()
        node.kernel = program.summary()
        return node

    @property
    def parsed(self) -> Program:
        return Program.from_json(self.program)


class FusedSemantics(Op):
    @classmethod
    def infer(cls, node, inputs, values):
        program = node.parsed
        program.kind  # noqa: B018  (raises for a program no kernel schedules)
        known = program.types(inputs)
        return [known[name] for name in program.outputs]

    @classmethod
    def reference(cls, node, *inputs):
        from ..semantics import evaluate_node
        values = {f"in{i}": v for i, v in enumerate(inputs) if v is not None}
        for step in node.parsed.steps:
            results = evaluate_node(step.node(), [values[a] if a else None for a in step.args])
            values.update({name: r for name, r in zip(step.results, results) if name})
        return [values[name] for name in node.parsed.outputs]

    @classmethod
    def known_values(cls, node, inputs, values):
        return None  # fused ops come from compute, never from shape arithmetic


FusedSemantics.op_type = "Fused"
register_op(OpSpec(DOMAIN, "Fused", 1, None, FusedSemantics, Fused))
