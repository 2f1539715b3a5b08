"""fuse-matmul-integer: ONNX Runtime's dynamically quantized product, as ``quantize_dynamic`` writes it,

    q, s, z = DynamicQuantizeLinear(x);  acc = MatMulInteger(q, W, z, w_zero);  Y = Cast<float>(acc) * (s * w_scale)

with W a constant int8 (or uint8) matrix [K, N] and w_scale / w_zero constants per tensor or per column  =>  one
sdflow QuantizedMatMul(x, W - w_zero, w_scale) with per-tensor activations: the same uint8 codes of x (the whole
tensor's range, as DynamicQuantizeLinear defines it), the same int32 sums, the same scale product, so imported
models run in codegen/kernels/qgemm.h (weights packed once, VNNI where the CPU has it) instead of quant.h's plain
integer loops. The weight's zero point is folded into its codes, which must then fit int8 (uint8 weights with the
zero point 128 of ``QuantType.QUInt8`` do); otherwise, and for any other shape of the pattern, the ops stay.
The GEMM epilogue (ONNX Runtime's bias Add after the Mul) is fused later by fuse-gemm-epilogue."""
from __future__ import annotations

import dataclasses

import numpy as np

from sdflow.ir import Graph, lookup_op
from ..fusion._rewrite import Topology
from ..infra import Pass, PassContext, PassResult, register_pass

__all__ = ["FuseMatMulInteger"]


@register_pass
@dataclasses.dataclass(frozen=True)
class FuseMatMulInteger(Pass):
    """DynamicQuantizeLinear -> MatMulInteger(constant weight) -> Cast -> Mul(scales)  =>  QuantizedMatMul."""

    name = "fuse-matmul-integer"

    def apply(self, graph: Graph, ctx: PassContext) -> PassResult:
        fused, notes = 0, []
        for node in graph.op_nodes():
            if node.op_type != "MatMulInteger" or node.domain_name:
                continue
            match = _match(graph, Topology(graph), node)
            if isinstance(match, str):
                notes.append(f"{node.label}: not fused, {match}")
                continue
            _rewrite(graph, node, *match)
            fused += 1
        return PassResult(fused > 0, {"fused_products": fused}, notes if ctx.explain else [])


def _producer(graph: Graph, tensor: str):
    return graph.producer(tensor) if tensor else None


def _match(graph: Graph, topology: Topology, node):
    """(x, codes, scales, cast node, mul node) of a product this pass rewrites, or why not."""
    inputs = graph.node_inputs(node) + [None] * (4 - len(graph.node_inputs(node)))
    q, w, z, w_zero = inputs[:4]
    quantizer = _producer(graph, q)
    if quantizer is None or quantizer.op_type != "DynamicQuantizeLinear" or quantizer.domain_name:
        return "its A is not DynamicQuantizeLinear's output"
    x, (q_out, s_out, z_out) = graph.node_inputs(quantizer)[0], graph.node_outputs(quantizer)
    if q != q_out or z != z_out:
        return "A's zero point is not the one DynamicQuantizeLinear found"
    if graph.tensor_type(x).dtype != np.float32 or graph.tensor_type(x).rank < 2:
        return "the quantized activation is not a float32 matrix"
    if not graph.is_constant(w) or (w_zero and not graph.is_constant(w_zero)):
        return "its weight or the weight's zero point is computed at run time"
    w_type = graph.tensor_type(w)
    if w_type.rank != 2 or w_type.dtype not in (np.dtype(np.int8), np.dtype(np.uint8)):
        return "the weight is not an 8-bit matrix"
    n = w_type.shape[1]
    cast = topology.only_consumer(graph.node_outputs(node)[0])
    if cast is None or cast.op_type != "Cast" or cast.domain_name or cast.attr("to") != 1:
        return "its int32 result is not read only by a Cast to float"
    mul = topology.only_consumer(graph.node_outputs(cast)[0])
    if mul is None or mul.op_type != "Mul" or mul.domain_name:
        return "the float result is not read only by a Mul"
    mul_inputs = graph.node_inputs(mul)
    other = mul_inputs[1] if mul_inputs[0] == graph.node_outputs(cast)[0] else mul_inputs[0]
    scales = _producer(graph, other)
    if scales is None or scales.op_type != "Mul" or scales.domain_name:
        return "the result's scale is not DynamicQuantizeLinear's scale times a constant"
    pair = graph.node_inputs(scales)
    if s_out not in pair or len(pair) != 2:
        return "the result's scale is not DynamicQuantizeLinear's scale times a constant"
    w_scale = pair[1] if pair[0] == s_out else pair[0]
    if not graph.is_constant(w_scale) or graph.tensor_type(w_scale).dtype != np.float32:
        return "the weight's scale is not a float32 constant"
    scale = graph.constant(w_scale)
    if scale.size not in (1, n) or (scale.size == n and n > 1 and scale.shape[-1] != n) or scale.ndim > 2:
        return f"the weight's scale has shape {list(scale.shape)} (one or one per column)"
    zero = graph.constant(w_zero) if w_zero else np.zeros(1, w_type.dtype)
    if zero.size not in (1, n):
        return f"the weight's zero point has shape {list(zero.shape)} (one or one per column)"
    codes = graph.constant(w).astype(np.int16) - zero.reshape(1, -1).astype(np.int16)
    if codes.min(initial=0) < -128 or codes.max(initial=0) > 127:
        return "the weight minus its zero point does not fit int8"
    out_type = graph.tensor_type(graph.node_outputs(mul)[0])
    if out_type.dtype != np.float32:
        return "the result is not float32"
    return x, codes.astype(np.int8), scale.reshape(-1).astype(np.float32), cast, mul


def _rewrite(graph: Graph, node, x, codes, scale, cast, mul) -> None:
    inputs = graph.node_inputs(node)
    w, quantizer = inputs[1], graph.producer(inputs[0])
    scales = graph.producer([t for t in graph.node_inputs(mul) if t != graph.node_outputs(cast)[0]][0])
    same = graph.tensor_type(w).dtype == np.dtype(np.int8) and np.array_equal(graph.constant(w), codes)
    codes_name = w if same else graph.add_constant(f"{w}_codes", codes)
    scale_name = graph.add_constant(f"{w}_product_scale", scale)
    spec = lookup_op("ai.sdflow", "QuantizedMatMul", 1)
    new = spec.node_class(f"int8_{node.label}", inputs=["A", "B", "b_scale"], outputs=["Y"], opset=1, per_row=0)
    graph.replace_ops([node, cast, mul], [(new, [x, codes_name, scale_name], graph.node_outputs(mul))])
    # The scale product and the quantizer, once nothing reads them any more.
    for op in (scales, quantizer):
        if not any(graph.consumers(t) or t in graph.outputs for t in graph.node_outputs(op) if t):
            graph.remove_op(op)
