"""gemm-to-matmul: a Gemm by a constant weight with a row-vector bias (alpha = beta = 1, A not transposed) becomes
MatMul + Add, so that the fusions written for MatMul take it: fuse-attention merges its projections and
fuse-gemm-epilogue puts the bias and what follows (GELU, residual adds) into the product's epilogue. A transposed
weight is transposed once, as a new constant. GPT-2's Conv1D exports as Reshape [B, S, K] -> [B * S, K], Gemm,
Reshape -> [B, S, N]; the two Reshapes go too (a MatMul takes the 3-D operand as it is), which leaves the
element-wise ops after it next to the product. The sums are the same: the Gemm kernels add C after the product."""
from __future__ import annotations

import dataclasses

from sdflow.ir import Graph, lookup_op
from ..infra import Pass, PassContext, PassResult, register_pass
from ._rewrite import Topology


@register_pass
@dataclasses.dataclass(frozen=True)
class GemmToMatmul(Pass):
    """Gemm(A, W, b) [with Reshapes around it]  =>  MatMul(A, W) -> Add(b)."""

    name = "gemm-to-matmul"

    def apply(self, graph: Graph, ctx: PassContext) -> PassResult:
        rewritten, unflattened, notes = 0, 0, []
        topology = Topology(graph)
        for node in list(topology.order):
            if node.op_type != "Gemm" or node.domain_name:
                continue
            reason = _declines(graph, node)
            if reason:
                notes.append(f"{node.label}: stays a Gemm, {reason}")
                continue
            unflattened += _rewrite(graph, topology, node)
            rewritten += 1
            topology = Topology(graph)
        return PassResult(rewritten > 0, {"gemms": rewritten, "reshapes_removed": unflattened},
                          notes if ctx.explain else [])


def _declines(graph: Graph, node) -> str | None:
    inputs = graph.node_inputs(node)
    a, w = inputs[0], inputs[1]
    c = inputs[2] if len(inputs) > 2 else None
    if node.attr("transA", 0):
        return "A is transposed"
    if node.attr("alpha", 1.0) != 1.0 or (c and node.attr("beta", 1.0) != 1.0):
        return "alpha or beta is not 1"
    if not graph.is_constant(w):
        return "its weight is computed at run time"
    if graph.tensor_type(a).dtype.name not in ("float32", "float64"):
        return f"element type {graph.tensor_type(a).dtype.name}"
    width = graph.tensor_type(graph.node_outputs(node)[0]).shape[1]
    if c and tuple(graph.tensor_type(c).shape) not in ((width, ), (1, width)):
        return f"C is not a row vector of {width} (shape {list(graph.tensor_type(c).shape)})"
    return None


def _rewrite(graph: Graph, topology: Topology, node) -> int:
    """Replaces the Gemm (and the Reshapes around it, where they only flatten and unflatten the rows); returns
    how many Reshapes went."""
    inputs = graph.node_inputs(node)
    a, w = inputs[0], inputs[1]
    c = inputs[2] if len(inputs) > 2 and inputs[2] else None
    y = graph.node_outputs(node)[0]
    if node.attr("transB", 0):
        w = graph.add_constant(f"{w}_t", graph.constant(w).T.copy())
    old = [node]
    flatten, unflatten = _flatten_pair(graph, topology, a, y)
    if flatten is not None:
        a, y = graph.node_inputs(flatten)[0], graph.node_outputs(unflatten)[0]
        old.append(unflatten)
        if topology.only_consumer(graph.node_outputs(flatten)[0]) is node:
            old.append(flatten)
    out_type = graph.tensor_type(y)
    product = graph.add_tensor(f"{node.label}_product", out_type) if c else y
    matmul = lookup_op("", "MatMul", 13).node_class(f"{node.label}_matmul", inputs=["A", "B"], outputs=["Y"],
                                                    opset=13)
    new = [(matmul, [a, w], [product])]
    if c:  # ([N] or [1, N]: either broadcasts over the rows)
        add = lookup_op("", "Add", 14).node_class(f"{node.label}_bias", inputs=["A", "B"], outputs=["C"], opset=14)
        new.append((add, [product, c], [y]))
    graph.replace_ops(old, new)
    return len(old) - 1


def _flatten_pair(graph: Graph, topology: Topology, a: str, y: str):
    """(Reshape x -> a, Reshape y -> z) when a = x's rows flattened ([..., K] -> [prod(...), K]) and z = y
    unflattened to the same leading dims ([.., N]); y read only by that Reshape. Else (None, None)."""
    flatten = topology.producer.get(a)
    unflatten = topology.only_consumer(y)
    if flatten is None or unflatten is None or flatten.op_type != "Reshape" or unflatten.op_type != "Reshape":
        return None, None
    x, z = graph.node_inputs(flatten)[0], graph.node_outputs(unflatten)[0]
    x_shape, z_shape = graph.tensor_type(x).shape, graph.tensor_type(z).shape
    a_shape, y_shape = graph.tensor_type(a).shape, graph.tensor_type(y).shape
    if len(x_shape) < 3 or len(z_shape) != len(x_shape) or x_shape[-1] != a_shape[-1] \
            or list(z_shape[:-1]) != list(x_shape[:-1]) or z_shape[-1] != y_shape[-1]:
        return None, None
    return flatten, unflatten

