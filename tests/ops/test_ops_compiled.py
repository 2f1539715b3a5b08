"""Every op of the first op set, compiled and run against ONNX Runtime at two batch sizes from one compile
(symbolic batch dim 'N'), with broadcasting where the op allows it."""
from __future__ import annotations

import numpy as np
import pytest
from onnx import helper

pytestmark = pytest.mark.compiled

F, I, B = np.float32, np.int64, np.bool_
R = np.random.default_rng(7)


def w(*shape, positive=False):
    values = R.standard_normal(shape).astype(np.float32)
    return np.abs(values) + 0.5 if positive else values


def case(op, inputs, outputs, attrs=None, inits=None, opset=17, positive=(), node_inputs_override=None):
    """One node ``op`` reading ``inputs`` [(name, dtype, dims)] then the initializers ``inits``, writing
    ``outputs`` (``node_inputs_override``: the node reads these names instead)."""
    return dict(op=op, inputs=inputs, outputs=outputs, attrs=attrs or {}, inits=inits or {}, opset=opset,
                positive=set(positive), node_inputs=node_inputs_override)


def unary(op, positive=False, **attrs):
    return pytest.param(case(op, [("x", F, ["N", 3, 5])], [("y", F, ["N", 3, 5])], attrs,
                             positive=["x"] if positive else []), id=f"{op}{attrs or ''}")


def binary(op, b_dims=(5, ), dtype=F, out_dtype=None, positive=False):
    return pytest.param(case(op, [("a", dtype, ["N", 3, 5]), ("b", dtype, list(b_dims))],
                             [("y", out_dtype or dtype, ["N", 3, 5])], positive=["a"] if positive else []),
                        id=f"{op}-broadcast{list(b_dims)}-{np.dtype(dtype).name}")


CASES = [
    binary("Add"), binary("Add", (1, 3, 1)), binary("Sub", (3, 1)), binary("Mul", ()), binary("Div"),
    binary("Add", (5, ), I), binary("Div", (5, ), F, positive=True),
    pytest.param(case("Pow", [("a", F, ["N", 3, 5])], [("y", F, ["N", 3, 5])], inits={"b": np.array(2.0, F)},
                      positive=["a"]), id="Pow-square"),
    pytest.param(case("Pow", [("a", F, ["N", 3, 5]), ("b", F, [5])], [("y", F, ["N", 3, 5])], positive=["a"]),
                 id="Pow-broadcast"),
    binary("Equal", (5, ), I, B),
    binary("Less", (5, ), F, B), binary("LessOrEqual", (5, ), I, B), binary("Greater", (1, 5), F, B),
    binary("GreaterOrEqual", (5, ), I, B), binary("And", (5, ), B, B), binary("Or", (3, 1), B, B),
    binary("Xor", (5, ), B, B),
    pytest.param(case("Max", [("a", F, ["N", 3, 5]), ("b", F, [5]), ("c", F, [3, 1])], [("y", F, ["N", 3, 5])]),
                 id="Max-variadic"),
    pytest.param(case("Min", [("a", I, ["N", 3, 5]), ("b", I, [5])], [("y", I, ["N", 3, 5])]), id="Min-int"),
    pytest.param(case("Sum", [("a", F, ["N", 3, 5]), ("b", F, [5]), ("c", F, ["N", 3, 5])],
                      [("y", F, ["N", 3, 5])]), id="Sum-variadic"),
    unary("Neg"), unary("Abs"), unary("Floor"), unary("Ceil"),
    unary("Sin"), unary("Atan"), unary("Sinh"), unary("Sign"), unary("Round"), unary("Softplus"), unary("Softsign"),
    unary("Elu", alpha=0.5), unary("Selu"), unary("Celu", alpha=2.0), unary("HardSigmoid", alpha=0.3),
    unary("HardSwish"), unary("ThresholdedRelu", alpha=0.2), unary("Shrink", lambd=0.3, bias=0.1),
    pytest.param(case("Mish", [("x", F, ["N", 3, 5])], [("y", F, ["N", 3, 5])], opset=18), id="Mish"),
    pytest.param(case("PRelu", [("x", F, ["N", 3, 5]), ("slope", F, [5])], [("y", F, ["N", 3, 5])]), id="PRelu"),
    pytest.param(case("Mod", [("a", I, ["N", 3, 5])], [("y", I, ["N", 3, 5])],
                      inits={"b": np.array([2, -3, 4, -5, 7], I)}), id="Mod-int-python-sign"),
    pytest.param(case("Mod", [("a", F, ["N", 3, 5]), ("b", F, [5])], [("y", F, ["N", 3, 5])], {"fmod": 1}),
                 id="Mod-float-fmod"),
    pytest.param(case("BitwiseXor", [("a", I, ["N", 4]), ("b", I, [4])], [("y", I, ["N", 4])], opset=18),
                 id="BitwiseXor"),
    pytest.param(case("Mean", [("a", F, ["N", 3, 5]), ("b", F, [5]), ("c", F, [3, 1])], [("y", F, ["N", 3, 5])]),
                 id="Mean-variadic"),
    pytest.param(case("CastLike", [("x", F, ["N", 4]), ("like", np.float64, [1])], [("y", np.float64, ["N", 4])]),
                 id="CastLike"),
    pytest.param(case("Size", [("x", F, ["N", 3, 5])], [("y", I, [])]), id="Size-symbolic"),
    pytest.param(case("ReduceMin", [("x", F, ["N", 3, 5])], [("y", F, ["N", 1, 5])], opset=18,
                      inits={"axes": np.array([1], I)}), id="ReduceMin"),
    pytest.param(case("ReduceProd", [("x", F, ["N", 3, 5])], [("y", F, ["N", 3])], {"keepdims": 0}, opset=18,
                      inits={"axes": np.array([-1], I)}), id="ReduceProd"),
    pytest.param(case("ReduceL2", [("x", F, ["N", 3, 5])], [("y", F, [1, 1, 5])], opset=18,
                      inits={"axes": np.array([0, 1], I)}), id="ReduceL2-over-batch"),
    pytest.param(case("ReduceLogSumExp", [("x", F, ["N", 3, 5])], [("y", F, ["N", 3, 1])], opset=18,
                      inits={"axes": np.array([2], I)}), id="ReduceLogSumExp"),
    pytest.param(case("ArgMax", [("x", F, ["N", 3, 5])], [("y", I, ["N", 1, 5])], {"axis": 1}), id="ArgMax"),
    pytest.param(case("ArgMin", [("x", F, ["N", 3, 5])], [("y", I, ["N", 3])], {"axis": -1, "keepdims": 0}),
                 id="ArgMin"),
    pytest.param(case("LogSoftmax", [("x", F, ["N", 3, 5])], [("y", F, ["N", 3, 5])], {"axis": 1}),
                 id="LogSoftmax"),
    pytest.param(case("Not", [("x", B, ["N", 4])], [("y", B, ["N", 4])]), id="Not"),
    pytest.param(case("IsNaN", [("x", F, ["N", 4])], [("y", B, ["N", 4])]), id="IsNaN"),
    pytest.param(case("GatherElements", [("data", F, ["N", 5, 4]), ("idx", I, ["N", 2, 4])], [("y", F, ["N", 2, 4])],
                      {"axis": 1}), id="GatherElements"),
    pytest.param(case("GatherND", [("data", F, [4, 5, 3]), ("idx", I, ["N", 2, 2])], [("y", F, ["N", 2, 3])]),
                 id="GatherND"),
    pytest.param(case("GatherND", [("data", F, ["N", 4, 5, 3]), ("idx", I, ["N", 2, 1])], [("y", F, ["N", 2, 5, 3])],
                      {"batch_dims": 1}), id="GatherND-batch-dims"),
    pytest.param(case("Range", [("x", F, ["N", 1])], [("y", I, [7])],
                      inits={"start": np.array(2, I), "limit": np.array(15, I), "delta": np.array(2, I)},
                      node_inputs_override=["start", "limit", "delta"]), id="Range"),
    pytest.param(case("CumSum", [("x", F, ["N", 4, 6])], [("y", F, ["N", 4, 6])], inits={"axis": np.array(1, I)}),
                 id="CumSum"),
    pytest.param(case("CumSum", [("x", F, ["N", 6])], [("y", F, ["N", 6])], {"exclusive": 1, "reverse": 1},
                      inits={"axis": np.array(-1, I)}), id="CumSum-exclusive-reverse"),
    unary("Sqrt", positive=True), unary("Reciprocal", positive=True), unary("Exp"), unary("Log", positive=True),
    unary("Tanh"), unary("Erf"), unary("Relu"), unary("LeakyRelu", alpha=0.2), unary("Sigmoid"),
    unary("Identity"),
    pytest.param(case("Gelu", [("x", F, ["N", 3, 5])], [("y", F, ["N", 3, 5])], opset=20), id="Gelu-erf"),
    pytest.param(case("Gelu", [("x", F, ["N", 3, 5])], [("y", F, ["N", 3, 5])], {"approximate": "tanh"},
                      opset=20), id="Gelu-tanh"),
    pytest.param(case("Cast", [("x", F, ["N", 4])], [("y", I, ["N", 4])], {"to": 7}), id="Cast-f32-i64"),
    pytest.param(case("Cast", [("x", I, ["N", 4])], [("y", F, ["N", 4])], {"to": 1}), id="Cast-i64-f32"),
    pytest.param(case("Cast", [("x", F, ["N", 4])], [("y", B, ["N", 4])], {"to": 9}), id="Cast-f32-bool"),
    pytest.param(case("Clip", [("x", F, ["N", 6])], [("y", F, ["N", 6])],
                      inits={"lo": np.array(-0.5, F), "hi": np.array(0.7, F)}), id="Clip-min-max"),
    pytest.param(case("Clip", [("x", F, ["N", 6]), ("", F, []), ("hi", F, [])], [("y", F, ["N", 6])]),
                 id="Clip-max-only"),
    pytest.param(case("Where", [("c", B, ["N", 1, 5]), ("a", F, ["N", 3, 5]), ("b", F, [5])],
                      [("y", F, ["N", 3, 5])]), id="Where-broadcast"),
    pytest.param(case("Softmax", [("x", F, ["N", 3, 7])], [("y", F, ["N", 3, 7])], {"axis": -1}), id="Softmax-last"),
    pytest.param(case("Softmax", [("x", F, ["N", 3, 7])], [("y", F, ["N", 3, 7])], {"axis": 1}), id="Softmax-axis1"),
    pytest.param(case("LayerNormalization", [("x", F, ["N", 4, 8])], [("y", F, ["N", 4, 8])], {"axis": -1},
                      inits={"g": w(8), "b": w(8)}), id="LayerNorm-last"),
    pytest.param(case("LayerNormalization", [("x", F, ["N", 4, 8])], [("y", F, ["N", 4, 8])], {"axis": 1},
                      inits={"g": w(4, 8)}), id="LayerNorm-two-axes-no-bias"),
    pytest.param(case("ReduceMean", [("x", F, ["N", 4, 6])], [("y", F, ["N", 4, 1])], {"axes": [-1]}),
                 id="ReduceMean-last-keepdims"),
    pytest.param(case("ReduceMean", [("x", F, ["N", 4, 6])], [("y", F, ["N", 6])], inits={"axes": np.array([1], I)},
                      attrs={"keepdims": 0}, opset=18), id="ReduceMean-opset18-axes-input"),
    pytest.param(case("ReduceSum", [("x", F, ["N", 4, 6])], [("y", F, ["N", 6])], {"keepdims": 0},
                      inits={"axes": np.array([1], I)}), id="ReduceSum-middle"),
    pytest.param(case("ReduceSum", [("x", F, ["N", 4, 6])], [("y", F, [1, 1, 1])]), id="ReduceSum-all"),
    pytest.param(case("ReduceMax", [("x", F, ["N", 4, 6])], [("y", F, ["N", 1, 1])], {"axes": [1, 2]}),
                 id="ReduceMax-two-axes"),
    pytest.param(case("Reshape", [("x", F, ["N", 4, 6])], [("y", F, ["N", 2, 12])],
                      inits={"s": np.array([0, 2, -1], I)}), id="Reshape-zero-minus-one"),
    pytest.param(case("Transpose", [("x", F, ["N", 4, 6])], [("y", F, [6, "N", 4])], {"perm": [2, 0, 1]}),
                 id="Transpose"),
    pytest.param(case("Concat", [("a", F, ["N", 2, 3]), ("b", F, ["N", 4, 3]), ("c", F, ["N", 1, 3])],
                      [("y", F, ["N", 7, 3])], {"axis": 1}), id="Concat-three"),
    pytest.param(case("Split", [("x", F, ["N", 6, 4])], [("y0", F, ["N", 3, 4]), ("y1", F, ["N", 3, 4])],
                      {"axis": 1}), id="Split-equal"),
    pytest.param(case("Split", [("x", F, ["N", 6, 4])], [("y0", F, ["N", 6, 1]), ("y1", F, ["N", 6, 3])],
                      {"axis": -1}, inits={"split": np.array([1, 3], I)}), id="Split-sizes"),
    # Negative steps with a start past the end, and a start past the end that leaves nothing (conformance finds).
    pytest.param(case("Slice", [("x", F, ["N", 10, 5])], [("y", F, ["N", 3, 2])],
                      inits={"starts": np.array([100, 4], I), "ends": np.array([0, 1], I),
                             "axes": np.array([1, 2], I), "steps": np.array([-3, -2], I)}), id="Slice-negative-steps"),
    pytest.param(case("Slice", [("x", F, ["N", 10, 5])], [("y", F, ["N", 0, 5])],
                      inits={"starts": np.array([1000], I), "ends": np.array([2000], I), "axes": np.array([1], I)}),
                 id="Slice-empty"),
    pytest.param(case("Slice", [("x", F, ["N", 10, 6])], [("y", F, ["N", 4, 3])],
                      inits={"starts": np.array([1, 0], I), "ends": np.array([9, 100], I),
                             "axes": np.array([1, 2], I), "steps": np.array([2, 2], I)}), id="Slice-steps"),
    pytest.param(case("Slice", [("x", F, ["N", 10, 6])], [("y", F, ["N", 10, 4])],
                      inits={"starts": np.array([-1], I), "ends": np.array([-100], I),
                             "axes": np.array([1], I), "steps": np.array([-1], I)},
                      ), id="Slice-reverse"),
    pytest.param(case("Tile", [("x", F, ["N", 3, 2])], [("y", F, ["N", 6, 6])],
                      inits={"repeats": np.array([1, 2, 3], I)}), id="Tile"),
    *[pytest.param(case("Pad", [("x", F, ["N", 3, 4])], [("y", F, ["N", 6, 3])], {"mode": mode},
                        inits={"pads": np.array([0, 2, 0, 0, 1, -1], I)}), id=f"Pad-{mode}")
      for mode in ("constant", "reflect", "edge", "wrap")],
    pytest.param(case("Pad", [("x", F, ["N", 3, 4])], [("y", F, ["N", 3, 7])],
                      inits={"pads": np.array([1, 2], I), "value": np.array(-5.0, F), "axes": np.array([-1], I)},
                      opset=18), id="Pad-constant-value-axes"),
    pytest.param(case("Trilu", [("x", F, ["N", 4, 5])], [("y", F, ["N", 4, 5])], {"upper": 0},
                      inits={"k": np.array(1, I)}), id="Trilu-lower-k"),
    pytest.param(case("DepthToSpace", [("x", F, ["N", 8, 2, 3])], [("y", F, ["N", 2, 4, 6])],
                      {"blocksize": 2, "mode": "CRD"}), id="DepthToSpace-CRD"),
    pytest.param(case("SpaceToDepth", [("x", F, ["N", 2, 4, 6])], [("y", F, ["N", 8, 2, 3])], {"blocksize": 2}),
                 id="SpaceToDepth"),
    pytest.param(case("EyeLike", [("x", F, [4, 6])], [("y", I, [4, 6])], {"k": -1, "dtype": 7}), id="EyeLike"),
    pytest.param(case("OneHot", [("idx", I, ["N", 3])], [("y", F, ["N", 5, 3])], {"axis": 1},
                      inits={"depth": np.array(5, I), "values": np.array([-1, 2], F)}), id="OneHot"),
    pytest.param(case("Hardmax", [("x", F, ["N", 3, 5])], [("y", F, ["N", 3, 5])], {"axis": 1}), id="Hardmax"),
    pytest.param(case("Dropout", [("x", F, ["N", 3])], [("y", F, ["N", 3]), ("mask", B, ["N", 3])]),
                 id="Dropout-inference"),
    pytest.param(case("GlobalMaxPool", [("x", F, ["N", 3, 4, 5])], [("y", F, ["N", 3, 1, 1])]), id="GlobalMaxPool"),
    pytest.param(case("GlobalLpPool", [("x", F, ["N", 3, 4, 5])], [("y", F, ["N", 3, 1, 1])]), id="GlobalLpPool"),
    pytest.param(case("MeanVarianceNormalization", [("x", F, ["N", 3, 4, 5])], [("y", F, ["N", 3, 4, 5])]),
                 id="MeanVarianceNormalization"),
    pytest.param(case("MeanVarianceNormalization", [("x", F, ["N", 3, 4, 5])], [("y", F, ["N", 3, 4, 5])],
                      {"axes": [1, 3]}), id="MeanVarianceNormalization-axes"),
    pytest.param(case("GlobalLpPool", [("x", F, ["N", 3, 4, 5])], [("y", F, ["N", 3, 1, 1])], {"p": 3}),
                 id="GlobalLpPool-p3"),
    pytest.param(case("InstanceNormalization", [("x", F, ["N", 3, 4, 5])], [("y", F, ["N", 3, 4, 5])],
                      {"epsilon": 1e-3}, inits={"scale": w(3), "bias": w(3)}), id="InstanceNormalization"),
    pytest.param(case("GroupNormalization", [("x", F, ["N", 6, 4])], [("y", F, ["N", 6, 4])], {"num_groups": 3},
                      inits={"scale": w(6), "bias": w(6)}, opset=21), id="GroupNormalization"),
    pytest.param(case("LpNormalization", [("x", F, ["N", 3, 5])], [("y", F, ["N", 3, 5])], {"axis": 1, "p": 1}),
                 id="LpNormalization-L1"),
    pytest.param(case("CumProd", [("x", F, ["N", 5])], [("y", F, ["N", 5])], {"exclusive": 1, "reverse": 1},
                      inits={"axis": np.array(1, I)}, opset=26), id="CumProd-exclusive-reverse"),
    pytest.param(case("Swish", [("x", F, ["N", 5])], [("y", F, ["N", 5])], {"alpha": 1.5}, opset=24), id="Swish"),
    pytest.param(case("RMSNormalization", [("x", F, ["N", 3, 8])], [("y", F, ["N", 3, 8])], {"axis": -1},
                      inits={"scale": w(8)}, opset=23), id="RMSNormalization"),
    pytest.param(case("NegativeLogLikelihoodLoss", [("x", F, ["N", 3, 2]), ("t", I, ["N", 2])], [("y", F, [])],
                      {"reduction": "mean", "ignore_index": 1}, inits={"w": w(3, positive=True)}), id="NLLLoss-mean"),
    pytest.param(case("SoftmaxCrossEntropyLoss", [("x", F, ["N", 3]), ("t", I, ["N"])],
                      [("y", F, ["N"]), ("log_prob", F, ["N", 3])], {"reduction": "none"}), id="SCELoss-none"),
    pytest.param(case("Attention", [("q", F, ["N", 4, 3, 8]), ("k", F, ["N", 2, 5, 8]), ("v", F, ["N", 2, 5, 6]),
                                    ("mask", F, [3, 5])], [("y", F, ["N", 4, 3, 6])], opset=23),
                 id="Attention-grouped-kv-additive-mask"),
    pytest.param(case("Attention", [("q", F, ["N", 3, 16]), ("k", F, ["N", 3, 8]), ("v", F, ["N", 3, 8]),
                                    ("pk", F, ["N", 2, 2, 4]), ("pv", F, ["N", 2, 2, 4])],
                      [("y", F, ["N", 3, 16]), ("present_k", F, ["N", 2, 5, 4]), ("present_v", F, ["N", 2, 5, 4])],
                      {"is_causal": 1, "q_num_heads": 4, "kv_num_heads": 2, "softcap": 3.0},
                      node_inputs_override=["q", "k", "v", "", "pk", "pv"], opset=23),
                 id="Attention-3d-causal-past-softcap"),
    pytest.param(case("TopK", [("x", F, ["N", 7])], [("v", F, ["N", 3]), ("i", I, ["N", 3])], {"largest": 0},
                      inits={"k": np.array([3], I)}), id="TopK-smallest"),
    pytest.param(case("ScatterElements", [("data", F, ["N", 5])], [("y", F, ["N", 5])], {"axis": 1,
                      "reduction": "add"}, inits={"idx": np.array([[0, -1, 0]], I), "upd": w(1, 3)}, opset=18),
                 id="ScatterElements-add"),
    pytest.param(case("ScatterND", [("data", F, [4, 3])], [("y", F, [4, 3])],
                      inits={"idx": np.array([[1], [-1]], I), "upd": w(2, 3)}), id="ScatterND"),
    pytest.param(case("QuantizeLinear", [("x", F, ["N", 3, 4])], [("y", np.int8, ["N", 3, 4])], {"axis": 1},
                      inits={"s": np.array([0.01, 0.02, 0.05], F), "z": np.array([0, 3, -5], np.int8)}),
                 id="QuantizeLinear-per-axis-int8"),
    pytest.param(case("DequantizeLinear", [("x", np.uint8, ["N", 4])], [("y", F, ["N", 4])],
                      inits={"s": np.array(0.1, F), "z": np.array(128, np.uint8)}), id="DequantizeLinear"),
    pytest.param(case("DynamicQuantizeLinear", [("x", F, ["N", 4])],
                      [("y", np.uint8, ["N", 4]), ("s", F, []), ("z", np.uint8, [])]), id="DynamicQuantizeLinear"),
    pytest.param(case("Einsum", [("a", F, ["N", 2, 3]), ("b", F, ["N", 3, 4])], [("y", F, ["N", 4, 2])],
                      {"equation": "bij, bjk -> bki"}), id="Einsum-batch-matmul-transposed"),
    pytest.param(case("Einsum", [("a", F, ["N", 3, 3])], [("y", F, ["N", 3])], {"equation": "...ii->...i"}),
                 id="Einsum-ellipsis-diagonal"),
    pytest.param(case("CenterCropPad", [("x", F, ["N", 5, 4])], [("y", F, ["N", 3, 7])],
                      {"axes": [1, 2]}, inits={"shape": np.array([3, 7], I)}, opset=18), id="CenterCropPad"),
    pytest.param(case("Compress", [("x", F, ["N", 4])], [("y", F, ["N", 2])], {"axis": 1},
                      inits={"keep": np.array([True, False, False, True])}), id="Compress"),
    # Range writing a graph output (so it is compiled, not folded): int32 and float element types.
    pytest.param(case("Range", [], [("y", np.int32, [4])], inits={"start": np.array(10, np.int32),
                      "limit": np.array(2, np.int32), "delta": np.array(-2, np.int32)}), id="Range-int32"),
    pytest.param(case("Range", [], [("y", F, [4])], inits={"start": np.array(0.5, F), "limit": np.array(2.3, F),
                      "delta": np.array(0.5, F)}), id="Range-float"),
    pytest.param(case("Gather", [("data", F, [10, 4]), ("idx", I, ["N", 3])], [("y", F, ["N", 3, 4])],
                      {"axis": 0}), id="Gather-embedding"),
    pytest.param(case("Gather", [("data", F, ["N", 5, 4])], [("y", F, ["N", 4])], {"axis": 1},
                      inits={"idx": np.array(-2, I)}), id="Gather-scalar-negative"),
    pytest.param(case("Unsqueeze", [("x", F, ["N", 4])], [("y", F, ["N", 1, 4, 1])],
                      inits={"axes": np.array([1, -1], I)}), id="Unsqueeze"),
    pytest.param(case("Squeeze", [("x", F, ["N", 1, 4, 1])], [("y", F, ["N", 4])],
                      inits={"axes": np.array([1, 3], I)}), id="Squeeze"),
    pytest.param(case("Flatten", [("x", F, ["N", 3, 2, 2])], [("y", F, ["N", 12])], {"axis": 1}), id="Flatten"),
    pytest.param(case("Flatten", [("x", F, ["N", 3, 2, 2])], [("y", F, ["N*3", 4])], {"axis": -2}),
                 id="Flatten-negative-axis"),  # axis -2 of rank 4 is 2 (found by the ONNX conformance suite)
    pytest.param(case("Shape", [("x", F, ["N", 3, 2])], [("y", I, [2])], {"start": 1}), id="Shape-start"),
    pytest.param(case("Shape", [("x", F, ["N", 3, 2])], [("y", I, [3])]), id="Shape-symbolic"),
    pytest.param(case("Expand", [("x", F, ["N", 1, 4])], [("y", F, ["N", 3, 4])],
                      inits={"shape": np.array([3, 1], I)}), id="Expand"),
    pytest.param(case("MatMul", [("a", F, ["N", 3, 4])], [("y", F, ["N", 3, 5])], inits={"b": w(4, 5)}),
                 id="MatMul-weights"),
    pytest.param(case("MatMul", [("a", F, ["N", 2, 3, 4]), ("b", F, ["N", 2, 4, 5])], [("y", F, ["N", 2, 3, 5])]),
                 id="MatMul-batched"),
    pytest.param(case("MatMul", [("a", F, ["N", 1, 3, 4]), ("b", F, [2, 4, 5])], [("y", F, ["N", 2, 3, 5])]),
                 id="MatMul-broadcast-batch"),
    pytest.param(case("MatMul", [("a", F, ["N", 4]), ("b", F, [4])], [("y", F, ["N"])]), id="MatMul-vector"),
    pytest.param(case("MatMul", [("a", F, [4]), ("b", F, ["N", 4, 3])], [("y", F, ["N", 3])]),
                 id="MatMul-vector-left"),
    pytest.param(case("Gemm", [("a", F, ["N", 4])], [("y", F, ["N", 5])], {"transB": 1, "alpha": 0.5, "beta": 2.0},
                      inits={"b": w(5, 4), "c": w(5)}), id="Gemm-transB-bias"),
    pytest.param(case("Gemm", [("a", F, [4, "N"]), ("b", F, [4, 3])], [("y", F, ["N", 3])], {"transA": 1}),
                 id="Gemm-transA-no-bias"),
    pytest.param(case("Conv", [("x", F, ["N", 3, 8, 8])], [("y", F, ["N", 4, 8, 8])],
                      {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1]}, inits={"w": w(4, 3, 3, 3), "b": w(4)}),
                 id="Conv-3x3-pad-bias"),
    pytest.param(case("Conv", [("x", F, ["N", 4, 9, 9])], [("y", F, ["N", 2, 3, 3])],
                      {"strides": [2, 2], "dilations": [2, 2]}, inits={"w": w(2, 4, 3, 3)}),
                 id="Conv-stride-dilation"),
    pytest.param(case("Conv", [("x", F, ["N", 4, 6, 6])], [("y", F, ["N", 6, 6, 6])],
                      {"group": 2, "pads": [1, 1, 1, 1]}, inits={"w": w(6, 2, 3, 3)}), id="Conv-grouped"),
    pytest.param(case("Conv", [("x", F, ["N", 4, 7, 7])], [("y", F, ["N", 4, 4, 4])],
                      {"group": 4, "pads": [1, 1, 1, 1], "strides": [2, 2]}, inits={"w": w(4, 1, 3, 3), "b": w(4)}),
                 id="Conv-depthwise"),
    # 3-D (video): R(2+1)D's spatial (1, 3, 3) and temporal (3, 1, 1) kernels, strides, dilation, groups.
    pytest.param(case("Conv", [("x", F, ["N", 3, 5, 8, 8])], [("y", F, ["N", 6, 5, 8, 8])],
                      {"pads": [0, 1, 1, 0, 1, 1]}, inits={"w": w(6, 3, 1, 3, 3), "b": w(6)}), id="Conv3d-spatial"),
    pytest.param(case("Conv", [("x", F, ["N", 4, 6, 5, 7])], [("y", F, ["N", 4, 3, 5, 4])],
                      {"strides": [2, 1, 2], "dilations": [1, 2, 1], "pads": [1, 2, 0, 1, 2, 1], "group": 2},
                      inits={"w": w(4, 2, 3, 3, 2)}), id="Conv3d-strided-dilated-grouped"),
    # Window taps that fall wholly in the padding (pads wider than the image), a channel multiplier of 2,
    # dilation and uneven pads: the depthwise and im2col loops skip out-of-image columns by range, not by test.
    pytest.param(case("Conv", [("x", F, ["N", 4, 3, 4])], [("y", F, ["N", 8, 3, 4])],
                      {"group": 4, "pads": [2, 2, 2, 2], "kernel_shape": [5, 5]}, inits={"w": w(8, 1, 5, 5)}),
                 id="Conv-depthwise-multiplier-wide-pads"),
    pytest.param(case("Conv", [("x", F, ["N", 3, 9, 8])], [("y", F, ["N", 3, 3, 2])],
                      {"group": 3, "pads": [0, 2, 1, 0], "strides": [2, 3], "dilations": [2, 2]},
                      inits={"w": w(3, 1, 3, 3), "b": w(3)}), id="Conv-depthwise-dilated-uneven-pads"),
    pytest.param(case("Conv", [("x", F, ["N", 2, 9, 8])], [("y", F, ["N", 3, 3, 2])],
                      {"pads": [0, 2, 1, 0], "strides": [2, 3], "dilations": [2, 2]},
                      inits={"w": w(3, 2, 3, 3), "b": w(3)}), id="Conv-im2col-dilated-uneven-pads"),
    pytest.param(case("Conv", [("x", F, ["N", 8, 5, 5])], [("y", F, ["N", 3, 5, 5])], inits={"w": w(3, 8, 1, 1)}),
                 id="Conv-pointwise"),
    pytest.param(case("Conv", [("x", F, ["N", 2, 7, 7])], [("y", F, ["N", 3, 4, 4])],
                      {"auto_pad": "SAME_UPPER", "strides": [2, 2]}, inits={"w": w(3, 2, 3, 3)}),
                 id="Conv-same-upper"),
    pytest.param(case("Conv", [("x", F, ["N", 2, 10])], [("y", F, ["N", 3, 8])], inits={"w": w(3, 2, 3)}),
                 id="Conv-1d"),
    pytest.param(case("MaxPool", [("x", F, ["N", 3, 9, 9])], [("y", F, ["N", 3, 5, 5])],
                      {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]}), id="MaxPool-3x3-s2"),
    pytest.param(case("MaxPool", [("x", F, ["N", 2, 8, 8])], [("y", F, ["N", 2, 4, 4])],
                      {"kernel_shape": [3, 3], "strides": [2, 2], "ceil_mode": 1}), id="MaxPool-ceil"),
    pytest.param(case("AveragePool", [("x", F, ["N", 3, 8, 8])], [("y", F, ["N", 3, 4, 4])],
                      {"kernel_shape": [2, 2], "strides": [2, 2]}), id="AveragePool-2x2"),
    pytest.param(case("AveragePool", [("x", F, ["N", 2, 5, 5])], [("y", F, ["N", 2, 5, 5])],
                      {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1], "count_include_pad": 1}),
                 id="AveragePool-count-pad"),
    pytest.param(case("AveragePool", [("x", F, ["N", 2, 5, 5])], [("y", F, ["N", 2, 5, 5])],
                      {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1]}), id="AveragePool-exclude-pad"),
    pytest.param(case("AveragePool", [("x", F, ["N", 2, 6, 6])], [("y", F, ["N", 2, 3, 3])],
                      {"kernel_shape": [3, 3], "strides": [2, 2], "ceil_mode": 1}), id="AveragePool-ceil"),
    pytest.param(case("MaxPool", [("x", F, ["N", 2, 9])], [("y", F, ["N", 2, 4])],
                      {"kernel_shape": [3], "strides": [2]}), id="MaxPool-1d"),
    pytest.param(case("MaxPool", [("x", F, ["N", 2, 5, 6, 7])], [("y", F, ["N", 2, 3, 3, 4])],
                      {"kernel_shape": [3, 2, 3], "strides": [2, 2, 2], "pads": [1, 0, 1, 1, 0, 1]}),
                 id="MaxPool-3d"),
    pytest.param(case("MaxPool", [("x", F, ["N", 2, 7, 6])], [("y", F, ["N", 2, 3, 3]), ("i", I, ["N", 2, 3, 3])],
                      {"kernel_shape": [3, 2], "strides": [2, 2], "storage_order": 1}), id="MaxPool-indices"),
    pytest.param(case("AveragePool", [("x", F, ["N", 2, 5, 5, 4])], [("y", F, ["N", 2, 3, 3, 2])],
                      {"kernel_shape": [3, 3, 2], "strides": [2, 2, 2], "pads": [1, 1, 0, 1, 1, 0],
                       "count_include_pad": 1}), id="AveragePool-3d-count-pad"),
    pytest.param(case("Resize", [("x", F, ["N", 2, 4, 5])], [("y", F, ["N", 2, 8, 10])], {"mode": "linear"}, opset=19,
                      inits={"roi": np.array([], F), "scales": np.array([1, 1, 2, 2], F)}), id="Resize-linear-x2"),
    pytest.param(case("Resize", [("x", F, ["N", 2, 9, 7])], [("y", F, ["N", 2, 4, 3])],
                      {"mode": "cubic", "antialias": 1, "axes": [3, 2]}, opset=19,
                      inits={"roi": np.array([], F), "scales": np.array([], F), "sizes": np.array([3, 4], I)}),
                 id="Resize-cubic-antialias-sizes"),
    pytest.param(case("Resize", [("x", F, ["N", 3, 5])], [("y", F, ["N", 3, 12])],
                      {"mode": "nearest", "coordinate_transformation_mode": "asymmetric", "nearest_mode": "floor"},
                      opset=19, inits={"roi": np.array([], F), "scales": np.array([1, 1, 2.5], F)}),
                 id="Resize-nearest-asymmetric"),
    pytest.param(case("ConvTranspose", [("x", F, ["N", 4, 5, 6])], [("y", F, ["N", 6, 10, 12])],
                      {"strides": [2, 2], "pads": [1, 0, 1, 1], "output_padding": [1, 1], "group": 2},
                      inits={"w": w(4, 3, 3, 2), "b": w(6)}), id="ConvTranspose-2d-group-bias"),
    pytest.param(case("ConvTranspose", [("x", F, ["N", 3, 7])], [("y", F, ["N", 2, 17])],
                      {"strides": [2], "dilations": [2]}, inits={"w": w(3, 2, 3)}), id="ConvTranspose-1d-dilated"),
    pytest.param(case("GridSample", [("x", F, ["N", 2, 5, 6]), ("grid", F, ["N", 3, 4, 2])],
                      [("y", F, ["N", 2, 3, 4])], {"mode": "linear", "padding_mode": "reflection"}, opset=20),
                 id="GridSample-linear-reflection"),
    pytest.param(case("LRN", [("x", F, ["N", 6, 4, 5])], [("y", F, ["N", 6, 4, 5])],
                      {"size": 3, "alpha": 0.002, "beta": 0.6, "bias": 1.5}), id="LRN"),
    pytest.param(case("AffineGrid", [("theta", F, [2, 2, 3])], [("grid", F, [2, 4, 5, 2])], {"align_corners": 1},
                      opset=20, inits={"size": np.array([2, 3, 4, 5], I)}), id="AffineGrid-2d"),
    pytest.param(case("LpPool", [("x", F, ["N", 3, 8, 8])], [("y", F, ["N", 3, 4, 4])],
                      {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1], "p": 3}, opset=18),
                 id="LpPool-p3"),
    pytest.param(case("GlobalAveragePool", [("x", F, ["N", 3, 4, 5])], [("y", F, ["N", 3, 1, 1])]),
                 id="GlobalAveragePool"),
    pytest.param(case("BatchNormalization", [("x", F, ["N", 3, 4, 4])], [("y", F, ["N", 3, 4, 4])],
                      {"epsilon": 1e-3}, inits={"s": w(3), "b": w(3), "m": w(3), "v": w(3, positive=True)}),
                 id="BatchNormalization"),
]


def _build(spec, helpers):
    inputs = [i for i in spec["inputs"]]
    node_inputs = spec["node_inputs"] or [n for n, *_ in inputs] + list(spec["inits"])
    graph_inputs = [i for i in inputs if i[0]]
    node = helper.make_node(spec["op"], node_inputs, [n for n, *_ in spec["outputs"]], name="op", **spec["attrs"])
    return helpers.make_model([node], graph_inputs, spec["outputs"], spec["inits"], spec["opset"]), graph_inputs


def random_feeds(spec, graph_inputs, helpers, rng, batch: int) -> dict:
    """Random inputs for a case, the symbolic dim N set to ``batch``; index inputs in their valid ranges."""
    feeds = {}
    for name, dtype, dims in graph_inputs:
        shape = [batch if d == "N" else d for d in dims]
        feeds[name] = helpers.random_array(rng, dtype, shape, positive=name in spec["positive"])
        if spec["op"] == "Gather" and name == "idx":
            feeds[name] = rng.integers(-10, 10, shape).astype(np.int64)
        if spec["op"].endswith("Loss") and name == "t":  # class ids (1 is also the ignored one above)
            feeds[name] = rng.integers(0, 3, shape).astype(np.int64)
    return feeds


@pytest.mark.parametrize("spec", CASES)
def test_op_matches_onnxruntime(spec, helpers, rng):
    model, graph_inputs = _build(spec, helpers)
    helpers.check_against_ort(model, [random_feeds(spec, graph_inputs, helpers, rng, batch) for batch in (2, 3)])


def test_constant_and_constant_of_shape(helpers, rng):
    """Constant nodes become graph constants; ConstantOfShape sized by a Shape of a symbolic input."""
    nodes = [
        helper.make_node("Constant", [], ["c"], value=helper.make_tensor("v", 1, [4], [1.0, 2.0, 3.0, 4.0])),
        helper.make_node("Shape", ["x"], ["s"]),
        helper.make_node("ConstantOfShape", ["s"], ["fill"], value=helper.make_tensor("f", 1, [1], [0.25])),
        helper.make_node("Add", ["x", "c"], ["t"]),
        helper.make_node("Mul", ["t", "fill"], ["y"]),
    ]
    model = helpers.make_model(nodes, [("x", F, ["N", 4])], [("y", F, ["N", 4])])
    for passes in ("O0", "O1"):
        helpers.check_against_ort(model, [{"x": rng.standard_normal((n, 4)).astype(F)} for n in (1, 5)], passes)


@pytest.mark.parametrize("exponent", [0.5, 2.0, 3.0, 1.7])
def test_pow_with_constant_exponent_is_specialised(helpers, rng, exponent):
    model = helpers.make_model([helper.make_node("Pow", ["x", "e"], ["y"])], [("x", F, ["N", 7])],
                               [("y", F, ["N", 7])], {"e": np.array(exponent, F)})
    compiled = helpers.check_against_ort(model, [{"x": np.abs(rng.standard_normal((n, 7))).astype(F) + 0.1}
                                                 for n in (1, 3)])
    code = "".join(p.read_text() for p in (compiled.build_folder / "src" / "cpu").glob("*.cpp"))
    assert ("pow(" in code) == (exponent == 1.7)


def test_lp_normalization_of_a_zero_vector_is_zero(helpers):
    # ONNX defines x / ||x|| as 0 where the norm is 0 (found by the conformance suite).
    import sdflow
    model = helpers.make_model([helper.make_node("LpNormalization", ["x"], ["y"], axis=0, p=2)],
                               [("x", F, [2, 3])], [("y", F, [2, 3])])
    x = np.array([[3, 0, 1], [4, 0, 1]], F)
    np.testing.assert_allclose(sdflow.compile(model)(x)[0], [[0.6, 0, 2 ** -0.5], [0.8, 0, 2 ** -0.5]], rtol=1e-6)


@pytest.mark.parametrize("trans_a, trans_b", [(0, 0), (0, 1), (1, 0), (1, 1)])
def test_gemm_kernels_for_every_transpose(helpers, rng, trans_a, trans_b):
    """A float32 Gemm with a constant B runs gemm.h on B packed at load (transposed or not); a transposed A goes to
    BLAS, whose one-row case (a batch-1 classifier head) calls GEMV, other row counts GEMM, in one build. Against
    ONNX Runtime, every transpose combination, with alpha, beta and a bias, one row and three."""
    a_dims = [7, "N"] if trans_a else ["N", 7]
    weights = {"b": rng.standard_normal((5, 7) if trans_b else (7, 5)).astype(F),
               "c": rng.standard_normal(5).astype(F)}
    model = helpers.make_model([helper.make_node("Gemm", ["a", "b", "c"], ["y"], transA=trans_a, transB=trans_b,
                                                 alpha=0.5, beta=2.0)],
                               [("a", F, a_dims)], [("y", F, ["N", 5])], weights)
    feeds = [{"a": rng.standard_normal([d if d != "N" else n for d in a_dims]).astype(F)} for n in (1, 3)]
    compiled = helpers.check_against_ort(model, feeds)
    code = "".join(p.read_text() for p in compiled.build_folder.glob("src/cpu/*.cpp"))
    if trans_a:
        assert "cblas_sgemv" in code and "cblas_sgemm" in code
    else:
        assert "gemm_packed" in code and "cblas_s" not in code


def test_float_max_pool_runs_over_padded_phase_planes(helpers, rng):
    """A float32 2-D MaxPool without indices reads -inf padded phase planes (a vectorised flat range); with the
    Indices output it keeps the window loop. Against ONNX Runtime on negative inputs (padding must not win):
    3x3 stride 2 pads 1, ceil mode with uneven pads, dilation 2, batch 1 and 2 from one build."""
    nodes = [helper.make_node("MaxPool", ["x"], ["a"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]),
             helper.make_node("MaxPool", ["x"], ["b"], kernel_shape=[2, 3], strides=[2, 2], pads=[0, 1, 1, 0],
                              ceil_mode=1),
             helper.make_node("MaxPool", ["x"], ["c"], kernel_shape=[3, 3], dilations=[2, 2], pads=[2, 2, 2, 2])]
    model = helpers.make_model(nodes, [("x", F, ["N", 3, 11, 9])],
                               [("a", F, ["N", 3, 6, 5]), ("b", F, ["N", 3, 6, 5]), ("c", F, ["N", 3, 11, 9])])
    feeds = [{"x": -np.abs(rng.standard_normal((n, 3, 11, 9))).astype(F) - 1} for n in (1, 2)]
    compiled = helpers.check_against_ort(model, feeds)
    code = "".join(p.read_text() for p in compiled.build_folder.glob("src/cpu/*.cpp"))
    assert code.count("sdflow_kernels::max_pool_plane(") >= 3
    indices = helpers.make_model([helper.make_node("MaxPool", ["x"], ["a", "i"], kernel_shape=[3, 3], strides=[2, 2],
                                                   pads=[1, 1, 1, 1])],
                                 [("x", F, ["N", 3, 11, 9])], [("a", F, ["N", 3, 6, 5]), ("i", np.int64, ["N", 3, 6, 5])])
    compiled = helpers.check_against_ort(indices, feeds)
    code = "".join(p.read_text() for p in compiled.build_folder.glob("src/cpu/*.cpp"))
    assert "max_pool_plane" not in code


@pytest.mark.parametrize("avx512", [True, False])
def test_float_depthwise_runs_as_masked_rows(helpers, rng, monkeypatch, avx512):
    """A float32 depthwise convolution with a column stride of 2, or of 1 and output rows of at most 32, sums
    rows straight from the image (``sdflow_kernels::conv_depthwise_rows``: masked loads, rows of zeros above and below);
    wider stride-1 rows keep the padded-plane kernel. Against ONNX Runtime at batch 1 and 2 from one build, plain
    and fused with bias and Clip: 3x3 over 7x7 (one chunk, 7 of 8 rows); stride 2 over 23x37 (two chunks, the
    second partial, pairs of loads crossing the row's end); 5x5 dilation 2, uneven pads, a channel multiplier of 2;
    pads of 3 around a 5x5 image (whole output rows in the padding); 1-D; a 40-wide stride-1 output. Without
    AVX-512 (``has_avx512`` False) every depthwise layer keeps the padded-plane kernel."""
    from sdflow.codegen import threads
    monkeypatch.setattr(threads, "has_avx512", lambda: avx512)  # the build cache's key asks it too
    monkeypatch.setenv("SDFLOW_GRAPH_CACHE", "0")  # builds are found by the graph cache's record, not by this patch
    nodes = [helper.make_node("Conv", ["s", "wa", "ba"], ["a0"], pads=[1, 1, 1, 1], group=16),
             helper.make_node("Clip", ["a0", "lo", "hi"], ["a"]),
             helper.make_node("Conv", ["u", "wb"], ["b"], pads=[1, 1, 1, 1], strides=[2, 2], group=4),
             helper.make_node("Conv", ["v", "wc", "bc"], ["c"], pads=[2, 3, 1, 0], dilations=[2, 2], group=3),
             helper.make_node("Conv", ["t", "wd"], ["d"], pads=[3, 3, 3, 3], group=2),
             helper.make_node("Conv", ["q", "we"], ["e"], pads=[1, 1], group=5),
             helper.make_node("Conv", ["z", "wf"], ["f"], pads=[1, 1, 1, 1], group=2)]
    weights = {"wa": w(16, 1, 3, 3), "ba": w(16), "lo": np.array(-1, F), "hi": np.array(1.5, F), "wb": w(4, 1, 3, 3),
               "wc": w(6, 1, 5, 5), "bc": w(6), "wd": w(2, 1, 3, 3), "we": w(5, 1, 3), "wf": w(2, 1, 3, 3)}
    shapes = {"s": (16, 7, 7), "u": (4, 23, 37), "v": (3, 11, 20), "t": (2, 5, 5), "q": (5, 30), "z": (2, 6, 40)}
    model = helpers.make_model(
        nodes, [(name, F, ["N", *shape]) for name, shape in shapes.items()],
        [("a", F, ["N", 16, 7, 7]), ("b", F, ["N", 4, 12, 19]), ("c", F, ["N", 6, 6, 15]), ("d", F, ["N", 2, 9, 9]),
         ("e", F, ["N", 5, 30]), ("f", F, ["N", 2, 6, 40])], weights)
    feeds = [{k: rng.standard_normal((n, *v)).astype(F) for k, v in shapes.items()} for n in (1, 2)]
    for passes in ("O1", "O2"):
        compiled = helpers.check_against_ort(model, feeds, passes=passes)
        code = "".join(p.read_text() for p in compiled.build_folder.glob("src/cpu/*.cpp"))
        assert code.count("sdflow_kernels::conv_depthwise_rows(") == (5 if avx512 else 0)
        assert code.count("sdflow_kernels::conv_depthwise_planes(") == (1 if avx512 else 6)
