"""fuse-gemm-epilogue: MatMul -> bias / activation / scaling / residual (element-wise ops, or a fused element-wise
kernel)  =>  one GEMM whose epilogue applies them to each row of the product while it is in cache."""
from __future__ import annotations

import dataclasses

from sdflow.ir import Graph
from sdflow.ir.ops.fused import Fused
from ..infra import Pass, PassContext, PassResult, register_pass
from ._rewrite import Topology, fuse_nodes, pointwise_chain

_DTYPES = ("float32", "float64")


@register_pass
@dataclasses.dataclass(frozen=True)
class FuseGemmEpilogue(Pass):
    """MatMul(x, W) -> Add(bias) -> Gelu/Relu/Tanh/Sigmoid/Mul(scale) -> Add(residual)  =>  one Fused GEMM."""

    name = "fuse-gemm-epilogue"

    def apply(self, graph: Graph, ctx: PassContext) -> PassResult:
        topology = Topology(graph)
        fused, absorbed, notes = 0, 0, []
        for node in topology.order:
            if node.op_type != "MatMul" or node.domain_name:
                continue
            reason = self._operands_decline(graph, node)
            chain = [] if reason else pointwise_chain(graph, topology, node, notes)
            if not reason and not chain:
                product = graph.node_outputs(node)[0]
                readers = ", ".join(f"{r.label} ({getattr(r, 'kernel', '') or r.op_type})"
                                    for r in topology.consumers.get(product, [])) or "a graph output"
                reason = f"its product is read by {readers}, not by one element-wise op of the same shape"
            if reason:
                notes.append(f"{node.label}: no epilogue fused, {reason}")
                continue
            fuse_nodes(graph, topology, [node, *chain], f"gemm_{node.label}")
            topology = Topology(graph)
            fused += 1
            absorbed += sum(len(n.parsed.steps) if isinstance(n, Fused) else 1 for n in chain)
        return PassResult(fused > 0, {"fused_gemms": fused, "epilogue_ops": absorbed}, notes if ctx.explain else [])

    @staticmethod
    def _operands_decline(graph: Graph, node) -> str | None:
        a, b = (graph.tensor_type(t) for t in graph.node_inputs(node))
        if b.rank != 2 or a.rank < 2:
            return f"the GEMM kernel takes a 2-D weight and an operand of rank >= 2 (got {a} x {b})"
        if a.dtype.name not in _DTYPES:
            return f"element type {a.dtype.name} has no BLAS GEMM"
        return None
