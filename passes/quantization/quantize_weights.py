"""quantize-weights: the constant weights of float32 products (MatMul, and the fused MatMul kernels of O2) stored in
``bits`` bits, per output channel and group of ``group_size`` inputs, by round-to-nearest or GPTQ (gptq.py); each
becomes DequantizeLinear(codes, scales, zero points; axis 0, block_size = group) in front of its product: ONNX's
blocked QDQ form (opset 21), whose codes are unsigned (uint8 for 8 bits, uint4 for 4 and 3 bits). Each weight
then goes into its product's kernel (fuse-dequantize-matmul: codegen/kernels/nbits.h reads the codes).

Convolutions (1-D/2-D Conv by a constant weight; O2's fused ones taken apart) are quantized as the matrix
[C_out, C_in k...] of their filters - one row per output channel, groups along C_in k... - and become
DequantizeLinear (axis 1) of that matrix, then Reshape to the filter bank. GPTQ's X is the input unfolded into the
patches each filter meets (im2col; group 1 only, grouped convolutions keep round-to-nearest). No convolution kernel
reads low-bit codes: a fold-constants after this pass turns the weight back into float32 (convolutions keep their
speed and get the quantized values; without one the weight is dequantized at each call); the written file keeps
the codes.

GPTQ needs calibration inputs (``PassContext.calibration``: feeds by ONNX input name; ``sdflow.compile(...,
calibration=[...])``, ``--calibration FILE.npz``). The graph is run once per calibration feed with the ops' numpy
references, in order; each product's inputs are captured when its turn comes, from the model as quantized so far
(the products before it already carry their quantized weights), its weight quantized from H = 2 X Xᵀ, and the run
goes on with the quantized weight. A weight that several products read keeps round-to-nearest under GPTQ (their
inputs differ); the pass says so with ``--explain``. Every product's relative reconstruction error
‖WX - ŴX‖² / ‖WX‖² on the calibration inputs is in ``layer_errors`` of ``quantize_graph``."""
from __future__ import annotations

import dataclasses

import ml_dtypes
import numpy as np

from sdflow.ir import Graph, PipelineError, SdflowError, evaluate_node, lookup_op
from sdflow.ir.ops.fused import Fused
from sdflow.ir.types import TensorType
from ..infra import Pass, PassContext, PassResult, register_pass
from . import gptq as numerics
from ..fusion._rewrite import unfuse_convolutions
from .fuse_dequantize_matmul import fuse_dequantize_products

__all__ = ["QuantizeWeights", "quantize_graph", "LayerError", "conv_patches", "conv_dequantize_inputs", "conv_weight"]

METHODS = ("rtn", "gptq")


@register_pass
@dataclasses.dataclass(frozen=True)
class QuantizeWeights(Pass):
    """Constant weights of MatMul and Conv  =>  bits-wide codes + DequantizeLinear (RTN or GPTQ)."""

    name = "quantize-weights"
    bits: int = 4
    group_size: int = 128  # inputs per group; -1: one group per output channel
    symmetric: bool = False
    method: str = "rtn"  # rtn | gptq
    act_order: bool = False  # GPTQ: columns by decreasing H_ii (groups found up front)
    damp: float = 0.01  # GPTQ: damping, a fraction of mean(diag H)
    block_size: int = 128  # GPTQ: columns per lazy batch update
    min_elements: int = 4096  # smaller weights stay float32

    def __post_init__(self):
        if self.bits not in (3, 4, 8):
            raise PipelineError(f"quantize-weights: bits must be 3, 4 or 8, not {self.bits}")
        if self.method not in METHODS:
            raise PipelineError(f"quantize-weights: method must be one of {', '.join(METHODS)}, not {self.method!r}")
        if self.group_size != -1 and self.group_size < 1:
            raise PipelineError(f"quantize-weights: group_size must be -1 or positive, not {self.group_size}")
        if self.block_size < 1 or not 0 <= self.damp < 1:
            raise PipelineError("quantize-weights: block_size must be positive and damp in [0, 1)")

    def check_calibration(self, calibration) -> None:
        """A PipelineError when the method needs calibration inputs and there are none."""
        if self.method == "gptq" and not calibration:
            raise PipelineError("quantize-weights{method=gptq} needs calibration inputs: "
                                "sdflow.compile(..., calibration=[feeds, ...]) or --calibration FILE.npz")

    def apply(self, graph: Graph, ctx: PassContext) -> PassResult:
        self.check_calibration(ctx.calibration)
        errors, notes = quantize_graph(graph, self, ctx.calibration if self.method == "gptq" else ())
        stats = {"weights": len(errors)}
        if errors:  # the products read their codes in their kernels (nbits.h)
            stats["fused_products"], more = fuse_dequantize_products(graph)
            notes += more
        if errors and ctx.calibration:
            stats["mean_relative_error"] = round(float(np.mean([e.relative for e in errors])), 6)
        return PassResult(bool(errors), stats, notes if ctx.explain else [])


@dataclasses.dataclass
class LayerError:
    weight: str
    relative: float  # ‖WX - ŴX‖² / ‖WX‖² over the calibration inputs (0 without calibration)


def _targets(graph: Graph, config: QuantizeWeights, notes: list[str]) -> tuple[dict, dict]:
    """Product node -> (input position of its activation, of its weight) for every float32 product by a constant
    2-D weight of at least ``min_elements`` that only products read; and every tensor's readers."""
    found, readers = {}, {}
    unfuse_convolutions(graph, lambda w: conv_weight(graph, w, config.min_elements))  # (O2's fused ones)
    for node in graph.op_nodes():
        for tensor in graph.node_inputs(node):
            if tensor:
                readers.setdefault(tensor, set()).add(node)
    for node in graph.op_nodes():
        inputs = graph.node_inputs(node)
        if node.op_type == "Conv" and not node.domain_name and len(inputs) > 1:
            if conv_weight(graph, inputs[1], 0):
                if conv_weight(graph, inputs[1], config.min_elements):
                    found[node] = (0, 1)
                else:
                    notes.append(f"{node.label}: weight {inputs[1]} stays float32 (under min_elements="
                                 f"{config.min_elements})")
            continue
        if node.op_type == "MatMul" and not node.domain_name:
            positions = (0, 1)
        elif isinstance(node, Fused) and node.parsed.kind == "matmul":
            args = node.parsed.steps[0].args
            if not all(a.startswith("in") for a in args[:2]):
                continue
            positions = (int(args[0][2:]), int(args[1][2:]))
        else:
            continue
        weight = inputs[positions[1]]
        if not weight or not graph.is_constant(weight):
            continue
        ttype = graph.tensor_type(weight)
        if ttype.rank != 2 or ttype.dtype != np.float32:
            continue
        if int(np.prod(ttype.shape)) < config.min_elements:
            notes.append(f"{node.label}: weight {weight} stays float32 ({int(np.prod(ttype.shape))} elements, "
                         f"under min_elements={config.min_elements})")
            continue
        found[node] = positions
    for node, (_, w) in list(found.items()):  # a weight other ops read too (a tied embedding) stays float32
        weight = graph.node_inputs(node)[w]
        others = [r for r in readers[weight] if r not in found]
        if others:
            notes.append(f"{node.label}: weight {weight} stays float32, {others[0].label} ({others[0].op_type}) "
                         "reads it too")
            del found[node]
    return found, readers


def conv_weight(graph: Graph, weight: str | None, min_elements: int) -> bool:
    """Whether ``weight`` is a Conv weight this pass quantizes (a constant float32 filter bank of a 1-D/2-D Conv)."""
    if not weight or not graph.is_constant(weight):
        return False
    ttype = graph.tensor_type(weight)
    return ttype.dtype == np.float32 and ttype.rank in (3, 4) and int(np.prod(ttype.shape)) >= min_elements


def conv_patches(x: np.ndarray, node, kernel) -> np.ndarray:
    """The Conv's input as the rows its weight matrix [C_out, C_in k...] multiplies: [batch x positions, C_in k...]
    (im2col), for group 1: the windows of the Conv's own geometry (padding, auto_pad, strides, dilations)."""
    from sdflow.ir.ops.nn import Conv, padded_windows
    x = np.asarray(x, np.float64)
    geometry = Conv.geometry(node, x.shape, (0, 0) + tuple(kernel))
    cols = np.stack([window for _, window in padded_windows(x, geometry, 0.0)], axis=2)  # [N, C, taps, out...]
    k = x.shape[1] * cols.shape[2]
    return cols.reshape(x.shape[0], k, -1).transpose(0, 2, 1).reshape(-1, k)


def quantize_graph(graph: Graph, config: QuantizeWeights, calibration=(),
                   results: dict | None = None) -> tuple[list[LayerError], list[str]]:
    """Quantizes every target weight of ``graph`` in place (see the module); GPTQ when ``calibration`` is given
    and the method asks for it. Returns each weight's reconstruction error and the notes; ``results`` (a dict)
    receives each weight's codes as ``{weight: (Quantized of weightᵀ, float32 value it replaced)}``."""
    notes: list[str] = []
    targets, readers = _targets(graph, config, notes)
    if not targets:
        return [], notes
    quantized: dict[str, tuple[numerics.Quantized, np.ndarray]] = {}  # weight -> (codes, dequantized float32)
    errors: list[LayerError] = []
    runs = [_Run(graph, feeds) for feeds in calibration]
    for node in graph.op_nodes():
        inputs = graph.node_inputs(node)
        if node in targets:
            x_pos, w_pos = targets[node]
            name = inputs[w_pos]
            value = graph.constant(name).astype(np.float64)
            conv = node.op_type == "Conv"  # its filters as the columns of a [C_in k..., C_out] matrix
            weight = value.reshape(value.shape[0], -1).T if conv else value
            grouped = conv and (node.attr("group", 1) or 1) != 1
            xs = [] if grouped else [conv_patches(run.values[inputs[x_pos]], node, value.shape[2:]) if conv
                                     else run.values[inputs[x_pos]] for run in runs]
            if name not in quantized:
                use_gptq = config.method == "gptq" and runs
                if use_gptq and len(readers[name]) > 1:
                    notes.append(f"{node.label}: weight {name} is read by {len(readers[name])} products, "
                                 "round-to-nearest (GPTQ takes one layer's inputs)")
                    use_gptq = False
                if use_gptq and grouped:
                    notes.append(f"{node.label}: a grouped convolution's filters see different inputs, "
                                 "round-to-nearest")
                    use_gptq = False
                group = config.group_size if config.group_size != -1 else weight.shape[0]
                if use_gptq:
                    result = numerics.gptq(weight.T, numerics.hessian(xs), config.bits, group, config.symmetric,
                                           config.act_order, config.damp, config.block_size)
                else:
                    result = numerics.rtn(weight.T, config.bits, group, config.symmetric)
                matrix = result.dequantized().T.astype(np.float32)
                quantized[name] = (result, matrix.T.reshape(value.shape) if conv else matrix)
                if xs:
                    errors.append(LayerError(name, _relative_error(weight, matrix, xs)))
                else:
                    errors.append(LayerError(name, 0.0))
            for run in runs:  # the run goes on with the quantized weight
                run.values[name] = quantized[name][1]
        for run in runs:
            run.step(node)
    for name, (result, _) in quantized.items():
        if results is not None:
            results[name] = (result, graph.constant(name))
        _replace_weight(graph, name, result, config.bits)
    return errors, notes


def _relative_error(weight: np.ndarray, dequantized: np.ndarray, xs: list[np.ndarray]) -> float:
    num = den = 0.0
    for x in xs:
        rows = np.asarray(x, np.float64).reshape(-1, weight.shape[0])
        exact = rows @ weight
        num += float(np.sum((exact - rows @ dequantized.astype(np.float64)) ** 2))
        den += float(np.sum(exact ** 2))
    return num / den if den else 0.0


class _Run:
    """One calibration feed through the graph, op by op (numpy references)."""

    def __init__(self, graph: Graph, feeds: dict):
        import sympy
        self.graph = graph
        self.values = dict(graph.constants)
        self.symbols = {}
        for name in graph.inputs:
            onnx_name, ttype = graph.onnx_name(name), graph.tensor_type(name)
            if onnx_name not in feeds:
                raise PipelineError(f"calibration feed lacks input {onnx_name!r}")
            value = np.asarray(feeds[onnx_name])
            if value.dtype != ttype.dtype or value.ndim != ttype.rank:
                raise PipelineError(f"calibration input {onnx_name!r} is {value.dtype}{list(value.shape)}, the "
                                    f"model takes {ttype}")
            for dim, size in zip(ttype.shape, value.shape):
                if isinstance(dim, sympy.Symbol) and self.symbols.setdefault(dim, size) != size:
                    raise PipelineError(f"calibration input {onnx_name!r} has {dim} = {size}, another input "
                                        f"{self.symbols[dim]}")
                if isinstance(dim, int) and dim != size:
                    raise PipelineError(f"calibration input {onnx_name!r} is {list(value.shape)}, the model takes "
                                        f"{ttype}")
            self.values[name] = value

    def step(self, node) -> None:
        arrays = [self.values[t] if t else None for t in self.graph.node_inputs(node)]
        try:
            results = evaluate_node(node, arrays, self.symbols)
        except SdflowError:
            raise
        except Exception as error:  # a numpy reference meeting values the model cannot take
            raise PipelineError(f"calibration run: {node.label} ({node.op_type}) failed on the calibration "
                                f"inputs: {type(error).__name__}: {error}") from None
        for tensor, value in zip(self.graph.node_outputs(node), results):
            if tensor is not None:
                self.values[tensor] = np.asarray(value)


CODE_TYPES = {8: np.uint8, 4: ml_dtypes.uint4, 3: ml_dtypes.uint4}


def dequantize_inputs(result: numerics.Quantized, bits: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(codes [K, N], scales and zero points [ceil(K / group), N]) of a weight [K, N] quantized as ``result``
    (of its transpose): the inputs of its DequantizeLinear (axis 0, block_size = group)."""
    code_type = CODE_TYPES[bits]
    return (result.codes.T.astype(code_type), result.scales.T.astype(np.float32),
            result.zeros.T.astype(code_type))


def conv_dequantize_inputs(result: numerics.Quantized, bits: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(codes [C_out, K], scales and zero points [C_out, ceil(K / group)]) of a Conv weight quantized as its
    [C_out, K] matrix: the inputs of a DequantizeLinear (axis 1, block_size = group) whose result is reshaped back."""
    code_type = CODE_TYPES[bits]
    return result.codes.astype(code_type), result.scales.astype(np.float32), result.zeros.astype(code_type)


def _replace_weight(graph: Graph, name: str, result: numerics.Quantized, bits: int) -> None:
    """The weight [K, N] as DequantizeLinear(codes, scales, zero points; axis 0, block_size = group), its result
    read wherever the weight was; a Conv weight [C_out, C_in, k...] as DequantizeLinear (axis 1) of its [C_out, K]
    matrix, then Reshape."""
    ttype = graph.tensor_type(name)
    conv = ttype.rank > 2
    values = (conv_dequantize_inputs if conv else dequantize_inputs)(result, bits)
    codes, scales, zeros = (graph.add_constant(f"{name}_{suffix}", value)
                            for suffix, value in zip((f"q{bits}", "scales", "zero_points"), values))
    dequantized = graph.add_tensor(f"{name}_dequantized", ttype)
    matrix = graph.add_tensor(f"{name}_dequantized_rows", TensorType(np.dtype(np.float32), values[0].shape)) \
        if conv else dequantized
    node = lookup_op("", "DequantizeLinear", 21).node_class(
        f"dequantize_{name}", inputs=["x", "x_scale", "x_zero_point"], outputs=["y"], opset=21, axis=1 if conv else 0,
        block_size=int(result.group_size))
    graph.add_op(node, [codes, scales, zeros], [matrix])
    if conv:
        shape = graph.add_constant(f"{name}_shape", np.array(ttype.shape, np.int64))
        reshape = lookup_op("", "Reshape", 21).node_class(f"reshape_{name}", inputs=["data", "shape"],
                                                         outputs=["reshaped"], opset=21)
        graph.add_op(reshape, [matrix, shape], [dequantized])
    graph.replace_uses(name, dequantized)
