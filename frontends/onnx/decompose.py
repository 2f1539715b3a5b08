"""ONNX nodes the importer rewrites into default-domain ops, with the arithmetic ONNX Runtime uses.

QLinearMatMul, QLinearConv and com.microsoft's QGemm become the integer contraction in int32 (MatMulInteger /
ConvInteger, plus the int32 bias), its float value times the requantization multiplier ``x_scale * w_scale /
y_scale`` (per output channel where the weight's scale is), rounded half to even and saturated by a QuantizeLinear
of scale 1 and the output's zero point: MLAS requantizes the same way, so their integers are exact.
com.microsoft's QLinearAdd, QLinearMul, QLinearGlobalAveragePool and QLinearSoftmax (what ONNX Runtime's static
quantizer writes in its QOperator layout) become the float arithmetic they stand for on ``(x - x_zero) * x_scale``,
divided by ``y_scale`` and requantized the same way; MLAS's vector code may round a value halfway between two
steps the other way.
com.microsoft's MatMulNBits (ONNX Runtime's block-quantized weights) becomes DequantizeLinear(4-bit codes,
scales, zero points; axis 0, block_size) and a MatMul (fuse-dequantize-matmul then gives the codes to the
product's kernel); other bit widths and float zero points are dequantized to a float32 weight when the model is
imported.
"""
from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

from sdflow.ir import ShapeInferenceError

__all__ = ["DECOMPOSED", "decompose", "decomposes"]


def _constant(name: str, value) -> onnx.NodeProto:
    return helper.make_node("Constant", [], [name], value=numpy_helper.from_array(np.asarray(value), name))


def _per_channel(source: str, rank: int, fresh, nodes: list) -> str:
    """``source`` (one value per output channel, or a scalar) shaped to broadcast over N x C x spatial dims."""
    shape, shaped = fresh("channel_shape"), fresh(f"{source}_per_channel")
    nodes += [_constant(shape, np.array([-1] + [1] * (rank - 2), np.int64)),
              helper.make_node("Reshape", [source, shape], [shaped])]
    return shaped


def _qlinear(node: onnx.NodeProto, fresh, rank_of, opset: int, value_of=None) -> list[onnx.NodeProto]:
    conv = node.op_type == "QLinearConv"
    x, x_scale, x_zero, w, w_scale, w_zero, y_scale, y_zero = (list(node.input) + [""] * 8)[:8]
    bias = node.input[8] if conv and len(node.input) > 8 else ""
    attributes = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    acc = fresh("acc")
    nodes = [helper.make_node("ConvInteger" if conv else "MatMulInteger", [x, w, x_zero, w_zero], [acc],
                              **attributes)]
    if bias:
        biased = fresh("biased")
        nodes.append(helper.make_node("Add", [acc, _per_channel(bias, rank_of(w), fresh, nodes)], [biased]))
        acc = biased
    _requantize(acc, [x_scale, w_scale], y_scale, y_zero, node.output[0], fresh, nodes,
                (lambda m: _per_channel(m, rank_of(w), fresh, nodes)) if conv else None)
    return nodes


def _requantize(acc: str, scales: list[str], divisor: str, zero: str, output: str, fresh,
                nodes: list, per_channel=None) -> None:
    """``output`` = saturate(round(float(acc) * prod(scales) / divisor) + zero); ``per_channel(name)`` shapes the
    multiplier (a weight scale per output channel). Without ``divisor`` the output is the float value."""
    widened = []
    for scale in scales + ([divisor] if divisor else []):  # float16 scales (opset 21) are widened first
        widened.append(fresh(f"{scale}_float"))
        nodes.append(helper.make_node("Cast", [scale], [widened[-1]], to=onnx.TensorProto.FLOAT))
    multiplier = widened[0]
    for scale in widened[1:len(scales)]:
        nodes.append(helper.make_node("Mul", [multiplier, scale], [fresh("scale_product")]))
        multiplier = nodes[-1].output[0]
    if divisor:
        nodes.append(helper.make_node("Div", [multiplier, widened[-1]], [fresh("multiplier")]))
        multiplier = nodes[-1].output[0]
    if per_channel is not None:
        multiplier = per_channel(multiplier)
    accumulated, value = fresh("acc_float"), fresh("requantized") if divisor else output
    nodes += [helper.make_node("Cast", [acc], [accumulated], to=onnx.TensorProto.FLOAT),
              helper.make_node("Mul", [accumulated, multiplier], [value])]
    if divisor:
        one = fresh("one")
        nodes += [_constant(one, np.float32(1.0)),
                  helper.make_node("QuantizeLinear", [value, one] + ([zero] if zero else []), [output])]


def _qgemm(node: onnx.NodeProto, fresh, rank_of, opset: int, value_of=None) -> list[onnx.NodeProto]:
    """com.microsoft QGemm: alpha * (A' - a_zero)(B' - b_zero) + C (int32 bias), quantized when y_scale is given."""
    a, a_scale, a_zero, b, b_scale, b_zero, bias, y_scale, y_zero = (list(node.input) + [""] * 9)[:9]
    attributes = {x.name: helper.get_attribute_value(x) for x in node.attribute}
    nodes = []
    for name, transposed in ((a, "transA"), (b, "transB")):
        if attributes.get(transposed, 0):
            nodes.append(helper.make_node("Transpose", [name], [fresh(f"{name}_t")], perm=[1, 0]))
    a = nodes[0].output[0] if attributes.get("transA", 0) else a
    b = nodes[-1].output[0] if attributes.get("transB", 0) else b
    acc = fresh("acc")
    nodes.append(helper.make_node("MatMulInteger", [a, b, a_zero, b_zero], [acc]))
    if bias:
        nodes.append(helper.make_node("Add", [acc, bias], [fresh("biased")]))
        acc = nodes[-1].output[0]
    scales = [a_scale, b_scale]
    if attributes.get("alpha", 1.0) != 1.0:
        alpha = fresh("alpha")
        nodes.append(_constant(alpha, np.float32(attributes["alpha"])))
        scales.append(alpha)
    _requantize(acc, scales, y_scale, y_zero, node.output[0], fresh, nodes)
    return nodes


def _dequantized(x: str, scale: str, zero: str, divisor: str, fresh, nodes: list) -> str:
    """(float(x) - zero) * (scale / divisor)."""
    value, ratio = fresh(f"{x}_float"), fresh(f"{x}_ratio")
    nodes.append(helper.make_node("Cast", [x], [value], to=onnx.TensorProto.FLOAT))
    if zero:
        zero_float, centred = fresh(f"{zero}_float"), fresh(f"{x}_centred")
        nodes += [helper.make_node("Cast", [zero], [zero_float], to=onnx.TensorProto.FLOAT),
                  helper.make_node("Sub", [value, zero_float], [centred])]
        value = centred
    nodes += [helper.make_node("Div", [scale, divisor], [ratio]),
              helper.make_node("Mul", [value, ratio], [fresh(f"{x}_scaled")])]
    return nodes[-1].output[0]


def _quantized_to(value: str, zero: str, output: str, fresh, nodes: list) -> None:
    one = fresh("one")
    nodes += [_constant(one, np.float32(1.0)),
              helper.make_node("QuantizeLinear", [value, one] + ([zero] if zero else []), [output])]


def _qlinear_add(node: onnx.NodeProto, fresh, rank_of, opset: int, value_of=None) -> list[onnx.NodeProto]:
    a, a_scale, a_zero, b, b_scale, b_zero, y_scale, y_zero = (list(node.input) + [""] * 8)[:8]
    nodes = []
    total = fresh("sum")
    nodes.append(helper.make_node("Add", [_dequantized(a, a_scale, a_zero, y_scale, fresh, nodes),
                                          _dequantized(b, b_scale, b_zero, y_scale, fresh, nodes)], [total]))
    _quantized_to(total, y_zero, node.output[0], fresh, nodes)
    return nodes


def _qlinear_global_average_pool(node: onnx.NodeProto, fresh, rank_of, opset: int,
                                 value_of=None) -> list[onnx.NodeProto]:
    x, x_scale, x_zero, y_scale, y_zero = (list(node.input) + [""] * 5)[:5]
    channels_last = any(a.name == "channels_last" and a.i for a in node.attribute)
    rank = rank_of(x)
    axes = list(range(1, rank - 1)) if channels_last else list(range(2, rank))
    nodes = []
    value, mean = _dequantized(x, x_scale, x_zero, y_scale, fresh, nodes), fresh("mean")
    if opset >= 18:  # ReduceMean's axes: an input from opset 18 on, an attribute before
        axes_name = fresh("axes")
        nodes += [_constant(axes_name, np.array(axes, np.int64)),
                  helper.make_node("ReduceMean", [value, axes_name], [mean], keepdims=1)]
    else:
        nodes.append(helper.make_node("ReduceMean", [value], [mean], axes=axes, keepdims=1))
    _quantized_to(mean, y_zero, node.output[0], fresh, nodes)
    return nodes


def _qlinear_mul(node: onnx.NodeProto, fresh, rank_of, opset: int, value_of=None) -> list[onnx.NodeProto]:
    a, a_scale, a_zero, b, b_scale, b_zero, y_scale, y_zero = (list(node.input) + [""] * 8)[:8]
    nodes, one, product = [], fresh("one"), fresh("product")
    nodes.append(_constant(one, np.float32(1.0)))
    nodes.append(helper.make_node("Mul", [_dequantized(a, a_scale, a_zero, y_scale, fresh, nodes),
                                          _dequantized(b, b_scale, b_zero, one, fresh, nodes)], [product]))
    _quantized_to(product, y_zero, node.output[0], fresh, nodes)
    return nodes


def _qlinear_softmax(node: onnx.NodeProto, fresh, rank_of, opset: int, value_of=None) -> list[onnx.NodeProto]:
    """Softmax of the dequantized input along ``axis`` (the semantics of Softmax-13, which the attribute ``opset``
    names for exports from opset 13 on; before, the two agree on the last axis)."""
    x, x_scale, x_zero, y_scale, y_zero = (list(node.input) + [""] * 5)[:5]
    attributes = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    axis = attributes.get("axis", -1)
    if attributes.get("opset", 13) < 13 and axis not in (-1, rank_of(x) - 1):
        raise ShapeInferenceError(f"QLinearSoftmax: the opset-{attributes['opset']} form over axis {axis} (not the "
                                  "last) is not supported")
    nodes, one, probabilities, scaled = [], fresh("one"), fresh("softmax"), fresh("scaled")
    nodes.append(_constant(one, np.float32(1.0)))
    nodes += [helper.make_node("Softmax", [_dequantized(x, x_scale, x_zero, one, fresh, nodes)], [probabilities],
                               axis=axis),
              helper.make_node("Div", [probabilities, y_scale], [scaled])]
    _quantized_to(scaled, y_zero, node.output[0], fresh, nodes)
    return nodes


def _unpack_low_first(blob: np.ndarray, bits: int, count: int) -> np.ndarray:
    """Codes of ``bits`` bits packed low-first in the bytes of each row of ``blob`` [rows, bytes]: [rows, count]."""
    per_byte = 8 // bits
    shifts = (np.arange(per_byte) * bits).astype(np.uint8)
    codes = (blob[..., None] >> shifts) & np.uint8((1 << bits) - 1)
    return codes.reshape(blob.shape[0], -1)[:, :count]


def _matmul_nbits(node: onnx.NodeProto, fresh, rank_of, opset: int, value_of=None) -> list[onnx.NodeProto]:
    """com.microsoft MatMulNBits: Y = A . W + bias, W[k][n] = (code - zero) * scale of k's block (see the module)."""
    attributes = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    k, n, bits, block = (int(attributes.get(name, default)) for name, default in
                         (("K", 0), ("N", 0), ("bits", 4), ("block_size", 0)))
    a, b, scales, zeros, g_idx, bias = (list(node.input) + [""] * 6)[:6]
    if bits not in (2, 4, 8) or block < 16 or block & (block - 1):
        raise ShapeInferenceError(f"MatMulNBits: bits {bits} and block_size {block} are not a supported form")
    values = {name: value_of(name) if value_of else None for name in (b, scales, zeros, g_idx) if name}
    missing = [name for name, value in values.items() if value is None]
    if missing:
        raise ShapeInferenceError(f"MatMulNBits: {', '.join(missing)} must be constants (weights)")
    blocks = -(-k // block)
    codes = _unpack_low_first(np.asarray(values[b], np.uint8).reshape(n, -1), bits, k)  # [n, k]
    scale = np.asarray(values[scales]).reshape(n, blocks)
    if g_idx and not np.array_equal(np.asarray(values[g_idx]).ravel(), np.arange(k) // block):
        raise ShapeInferenceError("MatMulNBits: a g_idx other than k // block_size (act-order) is not supported")
    if zeros and np.asarray(values[zeros]).dtype == np.uint8:
        zero = _unpack_low_first(np.asarray(values[zeros]).reshape(n, -1), bits, blocks)  # [n, blocks]
    elif zeros:
        zero = np.asarray(values[zeros]).reshape(n, blocks)  # float zero points
    else:
        zero = np.full((n, blocks), 1 << (bits - 1), np.uint8)
    nodes, weight = [], fresh("weight")
    if bits == 4 and zero.dtype == np.uint8:
        names = [fresh(hint) for hint in ("codes8", "codes", "scales", "zeros8", "zeros")]
        nodes += [_constant(names[0], np.ascontiguousarray(codes.T)),
                  helper.make_node("Cast", [names[0]], [names[1]], to=onnx.TensorProto.UINT4),
                  _constant(names[2], np.ascontiguousarray(scale.T)),
                  _constant(names[3], np.ascontiguousarray(zero.T)),
                  helper.make_node("Cast", [names[3]], [names[4]], to=onnx.TensorProto.UINT4),
                  helper.make_node("DequantizeLinear", [names[1], names[2], names[4]], [weight], axis=0,
                                   block_size=block)]
    else:  # dequantized once, here
        full = np.repeat(scale.astype(np.float64), block, axis=1)[:, :k] * \
            (codes.astype(np.float64) - np.repeat(zero.astype(np.float64), block, axis=1)[:, :k])
        nodes.append(_constant(weight, np.ascontiguousarray(full.T).astype(scale.dtype)))
    product = fresh("product") if bias else node.output[0]
    nodes.append(helper.make_node("MatMul", [a, weight], [product]))
    if bias:
        nodes.append(helper.make_node("Add", [product, bias], [node.output[0]]))
    return nodes


DECOMPOSED = {("", "QLinearMatMul"): _qlinear, ("", "QLinearConv"): _qlinear, ("com.microsoft", "QGemm"): _qgemm,
              ("com.microsoft", "QLinearAdd"): _qlinear_add,
              ("com.microsoft", "QLinearGlobalAveragePool"): _qlinear_global_average_pool,
              ("com.microsoft", "QLinearMul"): _qlinear_mul, ("com.microsoft", "QLinearSoftmax"): _qlinear_softmax,
              ("com.microsoft", "MatMulNBits"): _matmul_nbits}


def decomposes(node: onnx.NodeProto) -> bool:
    return ("" if node.domain == "ai.onnx" else node.domain, node.op_type) in DECOMPOSED


def decompose(node: onnx.NodeProto, fresh, rank_of, opset: int, value_of=None) -> list[onnx.NodeProto]:
    """The default-domain nodes (of ``opset``) that stand for ``node``: ``fresh(hint)`` gives unused tensor names,
    ``rank_of`` the rank of an input, ``value_of`` the value of a constant input (None otherwise)."""
    return DECOMPOSED[("" if node.domain == "ai.onnx" else node.domain, node.op_type)](node, fresh, rank_of, opset,
                                                                                       value_of)
