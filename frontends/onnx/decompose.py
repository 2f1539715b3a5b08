"""ONNX nodes the importer rewrites into other default-domain ops, with the arithmetic ONNX Runtime uses so that
integer results stay exact. QLinearMatMul and QLinearConv become the integer contraction in int32
(MatMulInteger / ConvInteger, plus QLinearConv's int32 bias), its float value times the requantization
multiplier ``x_scale * w_scale / y_scale`` (per output channel where the weight's scale is), rounded half to even
and saturated by a QuantizeLinear of scale 1 and the output's zero point: MLAS requantizes the same way."""
from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

__all__ = ["DECOMPOSED", "decompose"]


def _constant(name: str, value) -> onnx.NodeProto:
    return helper.make_node("Constant", [], [name], value=numpy_helper.from_array(np.asarray(value), name))


def _per_channel(source: str, rank: int, fresh, nodes: list) -> str:
    """``source`` (one value per output channel, or a scalar) shaped to broadcast over N x C x spatial dims."""
    shape, shaped = fresh("channel_shape"), fresh(f"{source}_per_channel")
    nodes += [_constant(shape, np.array([-1] + [1] * (rank - 2), np.int64)),
              helper.make_node("Reshape", [source, shape], [shaped])]
    return shaped


def _qlinear(node: onnx.NodeProto, fresh, rank_of) -> list[onnx.NodeProto]:
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
    product, multiplier, accumulated, value, one = (fresh(n) for n in (
        "scale_product", "multiplier", "acc_float", "requantized", "one"))
    scales = []
    for scale in (x_scale, w_scale, y_scale):  # float16 scales (opset 21) are widened first, as ONNX Runtime does
        scales.append(fresh(f"{scale}_float"))
        nodes.append(helper.make_node("Cast", [scale], [scales[-1]], to=onnx.TensorProto.FLOAT))
    nodes += [helper.make_node("Mul", scales[:2], [product]),
              helper.make_node("Div", [product, scales[2]], [multiplier])]
    if conv:
        multiplier = _per_channel(multiplier, rank_of(w), fresh, nodes)
    nodes += [helper.make_node("Cast", [acc], [accumulated], to=onnx.TensorProto.FLOAT),
              helper.make_node("Mul", [accumulated, multiplier], [value]),
              _constant(one, np.float32(1.0)),
              helper.make_node("QuantizeLinear", [value, one] + ([y_zero] if y_zero else []), [node.output[0]])]
    return nodes


DECOMPOSED = {"QLinearMatMul": _qlinear, "QLinearConv": _qlinear}


def decompose(node: onnx.NodeProto, fresh, rank_of) -> list[onnx.NodeProto]:
    """The default-domain nodes that stand for ``node``: ``fresh(hint)`` gives unused tensor names, ``rank_of``
    the rank of an input."""
    return DECOMPOSED[node.op_type](node, fresh, rank_of)
