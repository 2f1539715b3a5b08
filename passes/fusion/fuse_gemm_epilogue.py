"""fuse-gemm-epilogue: MatMul -> bias / activation / scaling / residual (element-wise ops, or a fused element-wise
kernel)  =>  one GEMM whose epilogue applies them to each row of the product while it is in cache. The int8
products of quantize-dynamic-int8 (QuantizedMatMul) and the fused products by 4-bit weights
(fuse-dequantize-matmul) take their epilogues the same way."""
from __future__ import annotations

import dataclasses

from sdflow.ir import Graph
from ..infra import Pass, PassContext, PassResult, register_pass
from ._rewrite import fuse_epilogues

_DTYPES = ("float32", "float64")


@register_pass
@dataclasses.dataclass(frozen=True)
class FuseGemmEpilogue(Pass):
    """MatMul(x, W) -> Add(bias) -> Gelu/Relu/Tanh/Sigmoid/Mul(scale) -> Add(residual)  =>  one Fused GEMM."""

    name = "fuse-gemm-epilogue"

    def apply(self, graph: Graph, ctx: PassContext) -> PassResult:
        fused, absorbed, notes = fuse_epilogues(graph, "MatMul", "gemm",
                                                lambda node: self._operands_decline(graph, node), result_noun="product")
        more, more_absorbed, more_notes = fuse_epilogues(graph, "QuantizedMatMul", "qgemm", lambda node: None,
                                                         result_noun="product", domain="ai.sdflow")
        fused, absorbed, notes = fused + more, absorbed + more_absorbed, notes + more_notes
        # A product by a 4-bit weight that quantize-weights already fused with its DequantizeLinear.
        more, more_absorbed, more_notes = fuse_epilogues(graph, "Fused", "gemm", lambda node: None,
                                                         result_noun="product", domain="ai.sdflow",
                                                         accept=lambda node: node.parsed.kind == "matmul_nbits")
        fused, absorbed, notes = fused + more, absorbed + more_absorbed, notes + more_notes
        return PassResult(fused > 0, {"fused_gemms": fused, "epilogue_ops": absorbed}, notes if ctx.explain else [])

    @staticmethod
    def _operands_decline(graph: Graph, node) -> str | None:
        a, b = (graph.tensor_type(t) for t in graph.node_inputs(node))
        if b.rank != 2 or a.rank < 2:
            return f"the GEMM kernel takes a 2-D weight and an operand of rank >= 2 (got {a} x {b})"
        if a.dtype.name not in _DTYPES:
            return f"element type {a.dtype.name} has no BLAS GEMM"
        return None
