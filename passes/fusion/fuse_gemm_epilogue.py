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
        anchors = [  # (op type, domain, prefix, decline, accept)
            ("MatMul", "", "gemm", lambda node: self._operands_decline(graph, node), None),
            ("QuantizedMatMul", "ai.sdflow", "qgemm", lambda node: None, None),
            # a product by a quantized weight that quantize-weights already fused with its DequantizeLinear
            ("Fused", "ai.sdflow", "gemm", lambda node: None, lambda node: node.parsed.kind == "matmul_nbits")]
        fused = absorbed = 0
        notes: list[str] = []
        for op_type, domain, prefix, decline, accept in anchors:
            count, ops, more = fuse_epilogues(graph, op_type, prefix, decline, result_noun="product", domain=domain,
                                              accept=accept)
            fused, absorbed, notes = fused + count, absorbed + ops, notes + more
        return PassResult(fused > 0, {"fused_gemms": fused, "epilogue_ops": absorbed}, notes if ctx.explain else [])

    @staticmethod
    def _operands_decline(graph: Graph, node) -> str | None:
        a, b = (graph.tensor_type(t) for t in graph.node_inputs(node))
        if b.rank != 2 or a.rank < 2:
            return f"the GEMM kernel takes a 2-D weight and an operand of rank >= 2 (got {a} x {b})"
        if a.dtype.name not in _DTYPES:
            return f"element type {a.dtype.name} has no BLAS GEMM"
        return None
