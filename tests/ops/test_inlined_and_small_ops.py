"""ReverseSequence, Det and BitCast compiled and compared with ONNX Runtime (or ONNX's reference where ONNX Runtime
lacks the op version), lengths a model cannot take refused, and ops that ONNX defines as functions (the window
functions) inlined by the loader."""
from __future__ import annotations

import ml_dtypes
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper
from onnx.reference import ReferenceEvaluator

import sdflow
from sdflow.frontends.onnx import load_model
from sdflow.ir import InputError
from sdflow.ort import run_onnxruntime

pytestmark = pytest.mark.compiled
RNG = np.random.default_rng(11)


def _model(node, inputs, outputs, opset):
    graph = helper.make_graph([node], "m", [helper.make_tensor_value_info(*i) for i in inputs],
                              [helper.make_tensor_value_info(*o) for o in outputs])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


@pytest.mark.parametrize("time_axis, batch_axis", [(0, 1), (1, 0)])
def test_reverse_sequence_matches_onnxruntime(time_axis, batch_axis):
    shape = ["T", "B", 3] if time_axis == 0 else ["B", "T", 3]
    model = _model(helper.make_node("ReverseSequence", ["x", "lens"], ["y"], time_axis=time_axis,
                                    batch_axis=batch_axis),
                   [("x", TensorProto.FLOAT, shape), ("lens", TensorProto.INT64, ["B"])],
                   [("y", TensorProto.FLOAT, shape)], 17)
    compiled = sdflow.compile(model)
    for steps, lengths in ((5, [5, 0, 3, 1]), (2, [2, 1])):
        dims = {"T": steps, "B": len(lengths)}
        x = RNG.standard_normal([dims.get(d, d) for d in shape]).astype(np.float32)
        feeds = {"x": x, "lens": np.array(lengths, np.int64)}
        np.testing.assert_array_equal(compiled(**feeds)[0], run_onnxruntime(model, feeds)["y"])
    with pytest.raises(InputError, match=r"'lens' holds sequence lengths \[6, 1\].*ReverseSequence"):
        compiled(x=np.zeros([5, 2, 3] if time_axis == 0 else [2, 5, 3], np.float32), lens=np.array([6, 1]))


def test_det_matches_onnxruntime_with_singular_and_pivoting_matrices():
    model = _model(helper.make_node("Det", ["x"], ["y"]), [("x", TensorProto.FLOAT, ["N", 4, 4])],
                   [("y", TensorProto.FLOAT, ["N"])], 17)
    x = RNG.standard_normal((6, 4, 4)).astype(np.float32)
    x[1, 3] = x[1, 0] * 2  # singular
    x[2] = np.eye(4, dtype=np.float32)[[1, 0, 3, 2]]  # needs row exchanges: determinant +1
    x[3, :, 0] = 0  # a zero column
    got = sdflow.compile(model)(x)[0]
    np.testing.assert_allclose(got, run_onnxruntime(model, {"x": x})["y"], rtol=1e-5, atol=1e-5)
    assert got[2] == 1.0 and got[3] == 0.0


@pytest.mark.parametrize("source, target", [(TensorProto.FLOAT, TensorProto.INT32),
                                            (TensorProto.INT8, TensorProto.UINT8),
                                            (TensorProto.FLOAT8E4M3FN, TensorProto.UINT8),
                                            (TensorProto.INT4, TensorProto.UINT4)])
def test_bit_cast_keeps_the_bits(source, target):
    model = _model(helper.make_node("BitCast", ["x"], ["y"], to=target), [("x", source, [3, 5])],
                   [("y", target, [3, 5])], 26)
    dtype = helper.tensor_dtype_to_np_dtype(source)
    bits = 4 if source == TensorProto.INT4 else 8 * np.dtype(dtype).itemsize
    raw = RNG.integers(0, 2 ** bits, (3, 5)).astype(f"uint{max(8, bits)}")
    x = raw.view(dtype)
    got = sdflow.compile(model)(x)[0]
    want = ReferenceEvaluator(model).run(None, {"x": x})[0]
    assert got.dtype == want.dtype
    np.testing.assert_array_equal(got.view(f"uint{8 * got.dtype.itemsize}"), want.view(f"uint{8 * want.dtype.itemsize}"))


def test_bit_cast_between_widths_is_refused():
    model = _model(helper.make_node("BitCast", ["x"], ["y"], to=TensorProto.INT64, name="widen"),
                   [("x", TensorProto.FLOAT, [4])], [("y", TensorProto.INT64, [4])], 26)
    with pytest.raises(sdflow.SdflowError, match=r"widen.*32 bits.*64 bits"):
        sdflow.compile(model)


@pytest.mark.parametrize("op", ["HannWindow", "HammingWindow", "BlackmanWindow"])
def test_window_functions_are_inlined_from_their_onnx_function(op):
    model = _model(helper.make_node(op, ["size"], ["w"], periodic=0, output_datatype=TensorProto.DOUBLE),
                   [], [("w", TensorProto.DOUBLE, [10])], 17)
    model.graph.initializer.append(onnx.numpy_helper.from_array(np.array(10, np.int64), "size"))
    assert op not in {n.op_type for n in load_model(model).graph.node}
    np.testing.assert_allclose(sdflow.compile(model)()[0], ReferenceEvaluator(model).run(None, {})[0], rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("opset, attrs", [(16, dict(mode="avg", sampling_ratio=2)),
                                          (16, dict(mode="max", coordinate_transformation_mode="output_half_pixel")),
                                          (10, dict(mode="avg", sampling_ratio=0))])
def test_roi_align_matches_onnxruntime(opset, attrs):
    """Regions partly outside the image, an adaptive sampling grid, both pooling modes and coordinate conventions;
    the number of regions is symbolic (Faster R-CNN's proposals come from NMS)."""
    model = _model(helper.make_node("RoiAlign", ["x", "rois", "batch"], ["y"], output_height=3, output_width=2,
                                    spatial_scale=0.5, **attrs),
                   [("x", TensorProto.FLOAT, [2, 3, 9, 7]), ("rois", TensorProto.FLOAT, ["r", 4]),
                    ("batch", TensorProto.INT64, ["r"])], [("y", TensorProto.FLOAT, ["r", 3, 3, 2])], opset)
    compiled = sdflow.compile(model)
    x = RNG.standard_normal((2, 3, 9, 7)).astype(np.float32)
    for count in (5, 1):
        corners = RNG.uniform(-4, 14, (count, 2)).astype(np.float32)
        feeds = {"x": x, "rois": np.concatenate([corners, corners + RNG.uniform(0.5, 8, (count, 2))], 1)
                 .astype(np.float32), "batch": RNG.integers(0, 2, count).astype(np.int64)}
        np.testing.assert_allclose(compiled(**feeds)[0], run_onnxruntime(model, feeds)["y"], rtol=1e-5, atol=1e-5)
    with pytest.raises(InputError, match="'batch' holds index 2, out of range for the batch of RoiAlign"):
        compiled(x=x, rois=feeds["rois"], batch=np.array([2], np.int64))
