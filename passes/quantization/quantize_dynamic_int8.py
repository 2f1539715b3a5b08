"""quantize-dynamic-int8: float32 products by constant weights (MatMul, Gemm with transA = 0 and alpha = beta = 1,
and the fused MatMul kernels of O2)  =>  sdflow's QuantizedMatMul: the weight stored as int8 (symmetric,
one scale per output column, or one for the matrix), the activations quantized to uint8 when the product runs
(over each row, or over the tensor as ONNX Runtime's DynamicQuantizeLinear does), int32 sums, float32 results.
ONNX Runtime's ``quantize_dynamic`` is the reference point; its default is per-tensor activations and weights.

``reduce_range`` keeps the weight codes in [-64, 64] instead of [-127, 127]: then no pair of uint8 x int8 products
leaves int16, and CPUs without VNNI multiply with AVX2's vpmaddubsw, exactly (codegen/kernels/qgemm.h); with the
full range they widen to int16 first. The numbers are the same on every CPU either way (the op defines them).
The GEMM epilogue (bias, activation, residual) stays fused: fuse-gemm-epilogue takes QuantizedMatMul too,
and a fused MatMul kernel keeps its epilogue when its product is replaced.

Convolutions (1-D and 2-D Conv by a constant float32 weight) become what ONNX Runtime's ``quantize_dynamic``
writes for them, in standard ops: DynamicQuantizeLinear of the input (per tensor), ConvInteger by the int8 weight
(symmetric, per output channel or per tensor), Cast to float, Mul by the input's scale times the weight's
(broadcast over the output channels), Add of the bias. ConvInteger runs as exact int32 loops (quant.h): the weights
take a quarter of the bytes, the convolution is not faster than float32's kernels."""
from __future__ import annotations

import dataclasses

import numpy as np

from sdflow.ir import Graph, PipelineError, lookup_op
from sdflow.ir.ops.fused import Fused, Program, Step
from sdflow.ir.types import TensorType
from ..fusion._rewrite import unfuse_convolutions
from ..infra import Pass, PassContext, PassResult, register_pass
from .quantize_weights import conv_weight

__all__ = ["QuantizeDynamicInt8", "quantize_weight_int8", "find_products", "quantize_products", "quantize_convs",
           "conv_weight_int8"]

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
        convs = quantize_convs(graph, self.min_elements, self.per_channel, self.reduce_range, notes)
        return PassResult(bool(targets) or convs > 0, {"products": len(targets), "weights": weights, "convs": convs},
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


def conv_weight_int8(weight: np.ndarray, per_channel: bool, limit: int) -> tuple[np.ndarray, np.ndarray]:
    """(int8 codes of the weight's shape, float32 scales [C_out] or [1]) of a Conv weight [C_out, C_in / group,
    k...]: each output channel's filter a column of quantize_weight_int8."""
    rows = np.asarray(weight, np.float32).reshape(weight.shape[0], -1)
    codes, scales = quantize_weight_int8(rows.T, per_channel, limit)
    return codes.T.reshape(weight.shape), scales


def quantize_convs(graph: Graph, min_elements: int, per_channel: bool, reduce_range: bool, notes: list[str]) -> int:
    """Rewrites every float32 1-D/2-D Conv by a constant weight of at least ``min_elements`` (see the module); a
    Conv that O2 fused with its epilogue is taken apart first. Returns how many."""
    unfuse_convolutions(graph, lambda w: conv_weight(graph, w, min_elements))  # (O2's fused ones)
    count = 0
    done: dict[str, tuple[str, str]] = {}
    for node in graph.op_nodes():
        inputs = graph.node_inputs(node) + [None] * 3
        if node.domain_name or not _convertible(graph, inputs, node.op_type, min_elements, notes, node.label):
            continue
        x, w, bias = inputs[:3]
        w_type = graph.tensor_type(w)
        spatial = w_type.rank - 2
        if w not in done:
            codes, scales = conv_weight_int8(graph.constant(w), per_channel, 64 if reduce_range else 127)
            broadcast = scales.reshape([-1] + [1] * spatial) if per_channel else scales.reshape(())
            done[w] = (graph.add_constant(f"{w}_int8", codes), graph.add_constant(f"{w}_int8_scales", broadcast))
        codes_name, scales_name = done[w]
        y = graph.node_outputs(node)[0]
        out_type = graph.tensor_type(y)
        label = node.label
        q = graph.add_tensor(f"{label}_x_q", TensorType(np.dtype(np.uint8), graph.tensor_type(x).shape))
        s = graph.add_tensor(f"{label}_x_scale", TensorType(np.dtype(np.float32), ()))
        z = graph.add_tensor(f"{label}_x_zero_point", TensorType(np.dtype(np.uint8), ()))
        acc = graph.add_tensor(f"{label}_acc", TensorType(np.dtype(np.int32), out_type.shape))
        acc_f = graph.add_tensor(f"{label}_acc_float", TensorType(np.dtype(np.float32), out_type.shape))
        multiplier = graph.add_tensor(f"{label}_multiplier", graph.tensor_type(scales_name))
        product = graph.add_tensor(f"{label}_product", out_type) if bias else y
        attributes = {k: v for k, v in node.attributes.items()
                      if k in ("auto_pad", "dilations", "group", "kernel_shape", "pads", "strides")}
        ops = [(_op("DynamicQuantizeLinear", 11, f"{label}_quantize", ["x"], ["y", "y_scale", "y_zero_point"]),
                [x], [q, s, z]),
               (_op("ConvInteger", 10, f"{label}_int8", ["x", "w", "x_zero_point"], ["y"], **attributes),
                [q, codes_name, z], [acc]),
               (_op("Cast", 21, f"{label}_float", ["input"], ["output"], to=1), [acc], [acc_f]),
               (_op("Mul", 14, f"{label}_scales", ["A", "B"], ["C"]), [s, scales_name], [multiplier]),
               (_op("Mul", 14, f"{label}_dequantize", ["A", "B"], ["C"]), [acc_f, multiplier], [product])]
        if bias:
            row = graph.add_constant(f"{bias}_channels", graph.constant(bias).reshape([-1] + [1] * spatial))
            ops.append((_op("Add", 14, f"{label}_bias", ["A", "B"], ["C"]), [product, row], [y]))
        graph.replace_ops([node], ops)
        count += 1
    return count


def _convertible(graph: Graph, inputs: list, op_type: str, min_elements: int, notes: list[str], label="") -> bool:
    """Whether a Conv with these inputs (x, W, B) is one this pass rewrites (a float32 input, a constant bias)."""
    x, w, bias = (list(inputs) + [None] * 3)[:3]
    if op_type != "Conv" or not x or graph.tensor_type(x).dtype != np.float32 or not conv_weight(graph, w, 0) \
            or (bias and not graph.is_constant(bias)):
        return False
    if not conv_weight(graph, w, min_elements):
        notes.append(f"{label}: weight {w} stays float32 ({int(np.prod(graph.tensor_type(w).shape))} elements, "
                     f"under min_elements={min_elements})")
        return False
    return True


def _op(op_type: str, opset: int, label: str, inputs: list[str], outputs: list[str], **attributes):
    return lookup_op("", op_type, opset).node_class(label, inputs=inputs, outputs=outputs, opset=opset, **attributes)
