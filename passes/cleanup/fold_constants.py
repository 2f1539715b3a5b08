"""fold-constants: an op whose inputs are all constants (or whose outputs are known from static shapes) is
evaluated at compile time with its numpy reference and replaced by constants. A DequantizeLinear of 4-bit codes
that products (MatMul, fused MatMul kernels) read stays (the weight keeps its 4 bits: fuse-dequantize-matmul gives
it to the product's kernel); one that other ops read (a Conv's, through a Reshape) is folded into float32."""
from __future__ import annotations

import dataclasses

import numpy as np

from sdflow.ir import Graph, evaluate_node, known_values
from sdflow.ir.types import FOUR_BIT_INTEGERS
from ..infra import Pass, PassContext, PassResult, register_pass


@register_pass
@dataclasses.dataclass(frozen=True)
class FoldConstants(Pass):
    """Ops over constants only (and Shape of static shapes)  =>  constants computed at compile time."""

    name = "fold-constants"
    max_elements: int = 1 << 24  # never materialise a folded tensor larger than this

    def apply(self, graph: Graph, ctx: PassContext) -> PassResult:
        folded, notes = 0, []
        outputs = set(graph.outputs)
        values = known_values(graph)
        for node in graph.op_nodes():
            inputs, results = graph.node_inputs(node), graph.node_outputs(node)
            present = [t for t in results if t]
            if any(t in outputs for t in present):
                notes.append(f"{node.label}: writes a graph output, kept")
                continue
            if node.op_type == "DequantizeLinear" and not node.domain_name and inputs[0] \
                    and graph.tensor_type(inputs[0]).dtype in FOUR_BIT_INTEGERS and _read_by_products(graph, node):
                notes.append(f"{node.label}: a 4-bit weight, kept quantized")
                continue
            if all(t in values and values[t].dtype != object for t in present):
                arrays = [values[t] for t in present]
            elif all(graph.is_constant(t) for t in inputs if t):
                if any(int(np.prod(graph.tensor_type(t).shape)) > self.max_elements for t in present):
                    notes.append(f"{node.label}: result larger than max_elements, kept")
                    continue
                arrays = [a for a, t in zip(evaluate_node(node, [graph.constant(t) if t else None for t in inputs]),
                                            results) if t]
            else:
                continue
            for tensor, value in zip(present, arrays):
                expected = graph.tensor_type(tensor)
                constant = graph.add_constant(f"{tensor}_folded",
                                              np.asarray(value, dtype=expected.dtype).reshape(expected.shape))
                values[constant] = graph.constant(constant)
                graph.replace_uses(tensor, constant)  # removes the constant again when nothing reads it
            graph.remove_op(node)
            folded += 1
        return PassResult(folded > 0, {"folded_ops": folded}, notes if ctx.explain else [])


def _read_by_products(graph: Graph, node) -> bool:
    """Whether every reader of the DequantizeLinear's result is a product that can take its codes."""
    readers = graph.consumers(graph.node_outputs(node)[0])
    return bool(readers) and all((r.op_type == "MatMul" and not r.domain_name)
                                 or (r.op_type == "Fused" and r.parsed.kind in ("matmul", "matmul_nbits"))
                                 for r in readers)
