"""fuse-dequantize-matmul: DequantizeLinear of a constant 4- or 8-bit weight (uint4, int4, uint8 or int8 codes
[K, N]; scales per tensor, per column, or in blocks along K) read by one float32 product (MatMul, or the head of a fused MatMul
kernel)  =>  one fused kernel whose program starts with that DequantizeLinear: codegen/kernels/nbits.h packs the
codes at load (two per byte, or one) and dequantizes a slice of the weight at a time in cache, never a float copy
of the matrix. The weights quantize-weights writes, 4-bit QDQ models and ONNX Runtime's MatMulNBits (imported as
DequantizeLinear) end up here; fold-constants turns an imported 8-bit weight into float32 before (O1 runs first).

The codes, scales and zero points get constants of their own, named ``<base>__nbits_codes``, ``__nbits_scales``
and ``__nbits_zeros`` (zero points of 0 when the model had none; int4 codes and zero points shifted to uint4, the
same differences; int8 ones shifted to uint8 likewise), so that a cached build finds the three again from the packed
weight's name. 4-bit codes that are all below 8 (quantize-weights{bits=3}) get the DequantizeLinear attribute
``code_bits=3``: the kernel packs them in 3 bits."""
from __future__ import annotations

import dataclasses

import ml_dtypes
import numpy as np

from sdflow.ir import Graph, lookup_op
from sdflow.ir.ops.fused import Fused
from sdflow.ir.ops.quantization import scale_index_axes
from sdflow.ir.types import FOUR_BIT_INTEGERS
from ..fusion._rewrite import Topology, fuse_nodes
from ..infra import Pass, PassContext, PassResult, register_pass

__all__ = ["FuseDequantizeMatMul", "fuse_dequantize_products", "NBITS_SUFFIXES"]

CODES = FOUR_BIT_INTEGERS + (np.dtype(np.uint8), np.dtype(np.int8))
NBITS_SUFFIXES = ("__nbits_codes", "__nbits_scales", "__nbits_zeros")


@register_pass
@dataclasses.dataclass(frozen=True)
class FuseDequantizeMatMul(Pass):
    """DequantizeLinear(4/8-bit constant weight) -> MatMul  =>  one fused kernel (nbits.h)."""

    name = "fuse-dequantize-matmul"

    def apply(self, graph: Graph, ctx: PassContext) -> PassResult:
        fused, notes = fuse_dequantize_products(graph)
        return PassResult(fused > 0, {"fused_products": fused}, notes if ctx.explain else [])


def fuse_dequantize_products(graph: Graph) -> tuple[int, list[str]]:
    """Fuses every 4-bit DequantizeLinear into the one product that reads it (see the module). Returns (how many,
    notes on those left alone)."""
    fused, notes = 0, []
    for node in graph.op_nodes():
        if node.op_type != "DequantizeLinear" or node.domain_name:
            continue
        topology = Topology(graph)
        reason = _decline(graph, topology, node)
        if reason:
            notes.append(f"{node.label}: not fused, {reason}")
            continue
        reader = topology.only_consumer(graph.node_outputs(node)[0])
        node = _canonical_constants(graph, node)
        fuse_nodes(graph, Topology(graph), [node, reader], f"nbits_{reader.label}")
        fused += 1
    return fused, notes


def _decline(graph: Graph, topology: Topology, node) -> str | None:
    inputs = graph.node_inputs(node)
    codes, scale = inputs[0], inputs[1]
    zero = inputs[2] if len(inputs) > 2 else None
    if not all(graph.is_constant(t) for t in (codes, scale, zero) if t):
        return "its codes, scales or zero points are computed at run time"
    code_type = graph.tensor_type(codes)
    if code_type.dtype not in CODES:
        return f"codes of {code_type.dtype} (the kernel takes 4- and 8-bit codes)"
    if code_type.rank != 2:
        return "codes are not a matrix"
    y = graph.node_outputs(node)[0]
    if graph.tensor_type(y).dtype != np.float32:
        return "the weight is not float32"
    kind, axis, _ = scale_index_axes(node, 2, graph.tensor_type(scale).shape)
    if kind == "blocked" and axis != 0 or kind == "axis" and axis != 1:
        return "scales are not per column or in blocks along K"
    reader = topology.only_consumer(y)
    if reader is None:
        return "the weight is read by several ops (or is an output)"
    positions = [p for p, t in enumerate(graph.node_inputs(reader)) if t == y]
    if reader.op_type == "MatMul" and not reader.domain_name:
        a = graph.node_inputs(reader)[0]
        if positions != [1] or graph.tensor_type(a).dtype != np.float32 or graph.tensor_type(a).rank < 2:
            return f"{reader.label} is not a float32 product by it"
        return None
    if isinstance(reader, Fused) and reader.parsed.kind == "matmul":
        head = reader.parsed.steps[0]
        readers = [a for s in reader.parsed.steps for a in s.args if a == f"in{positions[0]}"]
        if len(positions) != 1 or head.args[1] != f"in{positions[0]}" or len(readers) != 1:
            return f"{reader.label} reads it other than as its product's weight"
        return None
    return f"its reader {reader.label} ({getattr(reader, 'kernel', '') or reader.op_type}) is not a product"


def _canonical_constants(graph: Graph, node):
    """The node, replaced by one that reads its codes, scales and zero points as constants ``<base>__nbits_*`` (see
    the module)."""
    inputs = graph.node_inputs(node)
    codes, scale = graph.constant(inputs[0]), graph.constant(inputs[1])
    zero = graph.constant(inputs[2]) if len(inputs) > 2 and inputs[2] else np.zeros(scale.shape, codes.dtype)
    unsigned = np.dtype(ml_dtypes.uint4) if codes.dtype in FOUR_BIT_INTEGERS else np.dtype(np.uint8)
    if codes.dtype in (np.dtype(ml_dtypes.int4), np.dtype(np.int8)):  # (q + s) - (z + s) = q - z
        shift = 8 if codes.dtype == np.dtype(ml_dtypes.int4) else 128
        codes = (codes.astype(np.int16) + shift).astype(unsigned)
        zero = (zero.astype(np.int16) + shift).astype(unsigned)
    zero = zero.astype(unsigned)
    base = graph.fresh_name(f"{inputs[0]}_w")
    while any(f"{base}{suffix}" in graph.sdfg.arrays for suffix in NBITS_SUFFIXES):
        base = graph.fresh_name(base + "_")
    names = []
    for suffix, value in zip(NBITS_SUFFIXES, (codes, scale, zero)):
        name = graph.add_constant(f"{base}{suffix}", value)
        assert name == f"{base}{suffix}", name
        names.append(name)
    block = node.attr("block_size", 0) or 0
    kind, axis, _ = scale_index_axes(node, 2, scale.shape)
    three = unsigned == np.dtype(ml_dtypes.uint4) and int(codes.astype(np.uint8).max(initial=0)) < 8
    clone = lookup_op("", "DequantizeLinear", 21).node_class(
        node.label, inputs=["x", "x_scale", "x_zero_point"], outputs=["y"], opset=21,
        axis=0 if kind == "blocked" else (1 if kind == "axis" else node.attr("axis", 1)), block_size=int(block),
        **({"code_bits": 3} if three else {}))
    graph.replace_ops([node], [(clone, names, graph.node_outputs(node))])
    return clone
