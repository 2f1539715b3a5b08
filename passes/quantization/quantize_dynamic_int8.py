"""quantize-dynamic-int8: float32 products by constant weights (MatMul, Gemm with transA = 0 and alpha = beta = 1,
and the fused MatMul kernels of O2)  =>  sdflow's QuantizedMatMul: the weight stored as int8 (symmetric,
one scale per output column, or one for the matrix), the activations quantized to uint8 when the product runs
(over each row, or over the tensor as ONNX Runtime's DynamicQuantizeLinear does), int32 sums, float32 results.
ONNX Runtime's ``quantize_dynamic`` is the reference point; its default is per-tensor activations and weights.

``reduce_range`` keeps the weight codes in [-64, 64] instead of [-127, 127]: then no pair of uint8 x int8 products
leaves int16, and CPUs without VNNI multiply with AVX2's vpmaddubsw, exactly (codegen/kernels/qgemm.h); with the
full range they widen to int16 first. The numbers are the same on every CPU either way (the op defines them).
The GEMM epilogue (bias, activation, residual) stays fused: fuse-gemm-epilogue takes QuantizedMatMul too,
and a fused MatMul kernel keeps its epilogue when its product is replaced."""
from __future__ import annotations

import dataclasses

import numpy as np

from sdflow.ir import Graph, PipelineError, lookup_op
from sdflow.ir.ops.fused import Fused, Program, Step
from ..infra import Pass, PassContext, PassResult, register_pass

__all__ = ["QuantizeDynamicInt8", "quantize_weight_int8", "find_products", "quantize_products"]

DOMAIN = "ai.sdflow"


@register_pass
@dataclasses.dataclass(frozen=True)
class QuantizeDynamicInt8(Pass):
    """Products by constant float32 weights  =>  int8 weights, activations quantized at run time (int32 sums)."""

    name = "quantize-dynamic-int8"
    per_channel: bool = True  # one weight scale per output column (else one per matrix)
    per_row: bool = True  # activations quantized over each row (else over the whole tensor, as ONNX Runtime does)
    reduce_range: bool = True  # weight codes in [-64, 64] (exact vpmaddubsw on CPUs without VNNI)
    min_elements: int = 4096  # smaller weights stay float32

    def __post_init__(self):
        if self.min_elements < 0:
            raise PipelineError(f"quantize-dynamic-int8: min_elements must be >= 0, not {self.min_elements}")

    def apply(self, graph: Graph, ctx: PassContext) -> PassResult:
        notes: list[str] = []
        targets = find_products(graph, self.min_elements, notes)
        weights = quantize_products(graph, targets, self.per_channel, self.reduce_range, self.per_row)
        return PassResult(bool(targets), {"products": len(targets), "weights": weights},
                          notes if ctx.explain else [])


def find_products(graph: Graph, min_elements: int, notes: list[str]) -> list[tuple]:
    """(node, activation tensor, weight constant, whether the product reads the weight transposed) of every product
    by a constant float32 weight of at least ``min_elements`` (see the module), in graph order."""
    found = []
    for node in graph.op_nodes():
        target = _target(graph, node, min_elements, notes)
        if target is not None:
            found.append((node, *target))
    return found


def quantize_products(graph: Graph, targets: list[tuple], per_channel: bool, reduce_range: bool, per_row: bool,
                      activations: dict | None = None) -> int:
    """Replaces each target product by a QuantizedMatMul (its weight's int8 codes made once per weight);
    ``activations`` (activation tensor -> (scale, zero point)) makes the activations' quantization static.
    Returns how many weights were quantized."""
    codes: dict[tuple, tuple[str, str]] = {}
    static: dict[str, tuple[str, str]] = {}
    for node, a, weight, transposed in targets:
        key = (weight, transposed)
        if key not in codes:
            value = graph.constant(weight)
            q, scales = quantize_weight_int8(value.T if transposed else value, per_channel, 64 if reduce_range else 127)
            codes[key] = (graph.add_constant(f"{weight}_int8", q), graph.add_constant(f"{weight}_int8_scales", scales))
        if activations is not None and a not in static:
            scale, zero = activations[a]
            static[a] = (graph.add_constant(f"{a}_scale", np.array([scale], np.float32)),
                         graph.add_constant(f"{a}_zero_point", np.array([zero], np.uint8)))
        _replace(graph, node, *codes[key], per_row, static.get(a))
    return len(codes)


def _target(graph: Graph, node, min_elements: int, notes) -> tuple[str, str, bool] | None:
    """(activation, weight constant, whether the product reads it transposed) of a product this pass rewrites."""
    inputs = graph.node_inputs(node)
    if node.op_type == "MatMul" and not node.domain_name:
        a, weight, transposed = inputs[0], inputs[1], False
    elif node.op_type == "Gemm" and not node.domain_name:
        if node.attr("transA", 0) or node.attr("alpha", 1.0) != 1.0 or node.attr("beta", 1.0) != 1.0:
            notes.append(f"{node.label}: Gemm with transA, alpha or beta stays float32")
            return None
        if len(inputs) > 2 and inputs[2] and not _row_bias(graph, inputs[2], inputs[1], node):
            notes.append(f"{node.label}: Gemm whose C is not one constant row stays float32")
            return None
        a, weight, transposed = inputs[0], inputs[1], bool(node.attr("transB", 0))
    elif isinstance(node, Fused) and node.parsed.kind == "matmul":
        head = node.parsed.steps[0]
        a, weight, transposed = inputs[int(head.args[0][2:])], inputs[int(head.args[1][2:])], False
    else:
        return None
    if not a or not weight or not graph.is_constant(weight):
        return None
    a_type, w_type = graph.tensor_type(a), graph.tensor_type(weight)
    if a_type.dtype != np.float32 or w_type.dtype != np.float32 or w_type.rank != 2 or a_type.rank < 2:
        return None
    if int(np.prod(w_type.shape)) < min_elements:
        notes.append(f"{node.label}: weight {weight} stays float32 ({int(np.prod(w_type.shape))} elements, "
                     f"under min_elements={min_elements})")
        return None
    return a, weight, transposed


def _row_bias(graph: Graph, c: str, b: str, node) -> bool:
    if not graph.is_constant(c):
        return False
    n = graph.tensor_type(b).shape[0 if node.attr("transB", 0) else 1]
    shape = list(graph.tensor_type(c).shape)
    return graph.tensor_type(c).dtype == np.float32 and shape in ([n], [1, n])


def _replace(graph: Graph, node, codes: str, scales: str, per_row: bool, static=None) -> None:
    spec = lookup_op(DOMAIN, "QuantizedMatMul", 1)
    inputs, outputs = graph.node_inputs(node), graph.node_outputs(node)
    static_names = list(static) if static else []
    if not isinstance(node, Fused):
        bias = None
        if node.op_type == "Gemm" and len(inputs) > 2 and inputs[2]:
            value = graph.constant(inputs[2]).reshape(-1).astype(np.float32)
            bias = graph.add_constant(f"{inputs[2]}_row", value)
        connectors = ["A", "B", "b_scale", "bias" if bias else ""] + (["a_scale", "a_zero_point"] if static else [])
        new = spec.node_class(f"int8_{node.label}", inputs=connectors, outputs=["Y"], opset=1, per_row=int(per_row))
        graph.replace_ops([node], [(new, [inputs[0], codes, scales, bias] + static_names, outputs)])
        return
    program = node.parsed
    head = program.steps[0]
    extended = list(inputs) + [codes, scales] + static_names
    at = len(inputs)
    args = (head.args[0], f"in{at}", f"in{at + 1}", None) + ((f"in{at + 2}", f"in{at + 3}") if static else ())
    step = Step("QuantizedMatMul", 1, {"per_row": int(per_row)}, {},
                (("A", "B", "b_scale", "bias", "a_scale", "a_zero_point"), ("Y",)), args, head.results, DOMAIN)
    steps = (step,) + tuple(program.steps[1:])
    # The fused op's inputs that a step still reads (not the float weight), renumbered in order.
    used = sorted({a for s in steps for a in s.args if a and a.startswith("in")}, key=lambda a: int(a[2:]))
    renamed = {old: f"in{i}" for i, old in enumerate(used)}
    steps = tuple(dataclasses.replace(s, args=tuple(renamed.get(a, a) if a else None for a in s.args))
                  for s in steps)
    label = node.label[len("gemm_"):] if node.label.startswith("gemm_") else node.label
    fused = Fused.make(f"qgemm_{label}", Program(steps, program.outputs), len(used))
    graph.replace_ops([node], [(fused, [extended[int(a[2:])] for a in used], outputs)])


def quantize_weight_int8(weight: np.ndarray, per_channel: bool, limit: int) -> tuple[np.ndarray, np.ndarray]:
    """(int8 codes [K, N], float32 scales [N] or [1]) of a weight [K, N]: symmetric round-to-nearest, codes in
    [-limit, limit], scale = max |w| / limit over each column (or the matrix); an all-zero column gets scale 1."""
    w = np.asarray(weight, np.float32)
    peak = np.abs(w).max(axis=0) if per_channel else np.array([np.abs(w).max(initial=0.0)], np.float32)
    scales = np.where(peak > 0, peak / np.float32(limit), np.float32(1)).astype(np.float32)
    q = np.clip(np.rint(w / (scales if per_channel else scales[0])), -limit, limit).astype(np.int8)
    return q, scales
