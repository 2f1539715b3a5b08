"""Ops whose output shape depends on input values (NonZero, NonMaxSuppression, Unique, Compress with a run-time
condition) in a detector's post-processing: sdflow.compile makes a PartitionedModel whose own kernels run them
between compiled parts, and every output matches ONNX Runtime at several input sizes and score levels, with
empty selections too."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import helper

import sdflow
from sdflow.cli import main as cli_main
from sdflow.ort import run_onnxruntime

pytestmark = pytest.mark.compiled
F, I = np.float32, np.int64


@pytest.fixture
def detector(helpers):
    """A detection head's post-processing: per-class sigmoid scores, NMS, the kept boxes and scores gathered, the
    best three of them (TopK over a count known only at run time), the boxes whose best score passes a threshold
    (Compress), the distinct classes kept (Unique), and the positions of confident scores (NonZero)."""
    n = helper.make_node
    nodes = [
        n("Sigmoid", ["logits"], ["scores"]),
        n("NonMaxSuppression", ["boxes", "scores", "max_per_class", "iou", "threshold"], ["selected"], name="nms"),
        n("Gather", ["selected", "two"], ["box_index"], axis=1),
        n("Gather", ["selected", "one"], ["class_index"], axis=1),
        n("Squeeze", ["boxes", "zero_axis"], ["boxes2d"]),
        n("Gather", ["boxes2d", "box_index"], ["kept_boxes"], axis=0),
        n("GatherND", ["scores", "selected"], ["kept_scores"]),
        n("Shape", ["kept_scores"], ["count"]),
        n("Min", ["count", "three"], ["k"]),
        n("TopK", ["kept_scores", "k"], ["top_scores", "top_index"]),
        n("ReduceMax", ["scores", "class_axis"], ["best"], keepdims=0),
        n("Squeeze", ["best", "zero_axis"], ["best1d"]),
        n("Greater", ["best1d", "half"], ["confident_box"]),
        n("Compress", ["boxes2d", "confident_box"], ["confident_boxes"], axis=0, name="compress"),
        n("Unique", ["class_index"], ["classes", "first", "inverse", "class_counts"], sorted=1, name="unique"),
        n("Greater", ["scores", "nine"], ["confident"]),
        n("NonZero", ["confident"], ["where"], name="nonzero"),
        n("Cast", ["where"], ["where_float"], to=onnx.TensorProto.FLOAT),
        n("ReduceSum", ["where_float"], ["where_sum"], keepdims=0),
    ]
    outputs = [("kept_boxes", F, ["k", 4]), ("top_scores", F, ["t"]), ("confident_boxes", F, ["c", 4]),
               ("classes", I, ["u"]), ("class_counts", I, ["u"]), ("inverse", I, ["k"]), ("where", I, [3, "w"]),
               ("where_sum", F, [])]
    return helpers.make_model(
        nodes, [("boxes", F, [1, "n", 4]), ("logits", F, [1, 3, "n"])], outputs,
        {"max_per_class": np.array([4], I), "iou": np.array([0.4], F), "threshold": np.array([0.3], F),
         "two": np.array(2, I), "one": np.array(1, I), "zero_axis": np.array([0], I), "three": np.array([3], I),
         "class_axis": np.array([1], I), "half": np.array(0.5, F), "nine": np.array(0.9, F)}, opset=18)


def _inputs(rng, n, shift):
    corner = rng.uniform(0, 20, (1, n, 2)).astype(F)
    size = rng.uniform(1, 6, (1, n, 2)).astype(F)
    return {"boxes": np.concatenate([corner, corner + size], axis=2),
            "logits": (rng.standard_normal((1, 3, n)) * 2 + shift).astype(F)}


def test_detector_post_processing_matches_onnxruntime(detector, rng):
    compiled = sdflow.compile(detector)
    assert isinstance(compiled, sdflow.PartitionedModel)
    assert compiled.host_nodes == ["nms (ai.onnx::NonMaxSuppression)", "compress (ai.onnx::Compress)",
                                   "unique (ai.onnx::Unique)", "nonzero (ai.onnx::NonZero)"]
    assert compiled.fallback_nodes == []
    assert [p.kind for p in compiled.parts].count("compiled") >= 2
    # Many boxes, few boxes, and scores so low that nothing is selected (every output empty).
    for n, shift in ((40, 0.0), (7, 1.0), (12, -20.0)):
        feeds = _inputs(rng, n, shift)
        expected = run_onnxruntime(detector, feeds)
        got = compiled(**feeds)
        for name, want in expected.items():
            assert got[name].shape == want.shape, (name, n)
            np.testing.assert_allclose(got[name], want, rtol=1e-6, atol=1e-6, err_msg=f"{name} (n={n})")
        if shift < -10:
            assert got["kept_boxes"].shape == (0, 4) and got["where"].shape == (3, 0)


def test_inspect_and_compile_name_the_nodes_run_between_parts(detector, tmp_path, capsys):
    path = tmp_path / "detector.onnx"
    onnx.save(detector, path)
    assert cli_main(["inspect", str(path)]) == 0
    out = capsys.readouterr().out
    assert "data-dependent output shapes: 4 node(s)" in out and "UNSUPPORTED" not in out
    assert cli_main(["compile", str(path)]) == 0
    assert "dynamic-shape kernels run 4 node(s)" in capsys.readouterr().out


def test_compress_with_a_constant_condition_stays_compiled(helpers):
    model = helpers.make_model([helper.make_node("Compress", ["x", "keep"], ["y"], axis=1)], [("x", F, ["n", 3])],
                               [("y", F, ["n", 2])], {"keep": np.array([True, False, True])})
    assert isinstance(sdflow.compile(model), sdflow.CompiledModel)


def test_a_condition_longer_than_the_axis_is_an_input_error(helpers):
    model = helpers.make_model([helper.make_node("Compress", ["x", "keep"], ["y"], axis=0)],
                               [("x", F, ["n"]), ("keep", np.bool_, ["m"])], [("y", F, ["k"])])
    compiled = sdflow.compile(model)
    np.testing.assert_array_equal(compiled(np.arange(4, dtype=F), np.array([1, 0, 1], bool))[0], [0, 2])
    with pytest.raises(sdflow.InputError, match="condition has 5 entries, more than the 4"):
        compiled(np.arange(4, dtype=F), np.ones(5, bool))


def test_nms_inside_a_branch_and_slices_past_a_run_time_size(helpers, rng):
    """torchvision's detectors wrap NMS in ``If boxes.numel() == 0`` and slice the kept boxes to at most N: the If
    picks its branch at run time (each branch compiled once), and a Slice end beyond a size known only at run time
    clamps as ONNX says (min(count, 5)) rather than being assumed inside it."""
    n = helper.make_node
    value = helper.make_tensor_value_info
    nms = helper.make_graph(
        [n("NonMaxSuppression", ["boxes", "scores", "max_per_class", "iou"], ["selected_nms"], name="nms"),
         n("Gather", ["selected_nms", "two"], ["kept"], axis=1)], "then", [], [value("kept", onnx.TensorProto.INT64, ["k"])])
    none = helper.make_graph([n("Constant", [], ["empty"], value=onnx.numpy_helper.from_array(np.zeros(0, I)))],
                             "else", [], [value("empty", onnx.TensorProto.INT64, [0])])
    nodes = [n("Size", ["boxes"], ["numel"]), n("Greater", ["numel", "zero"], ["any"]),
             n("If", ["any"], ["kept_index"], then_branch=nms, else_branch=none, name="if_any"),
             n("Slice", ["kept_index", "start", "five"], ["first_five"]),
             n("Cast", ["first_five"], ["first_five_float"], to=onnx.TensorProto.FLOAT)]
    model = helpers.make_model(
        nodes, [("boxes", F, [1, "n", 4]), ("scores", F, [1, 1, "n"])], [("first_five_float", F, ["f"])],
        {"max_per_class": np.array([8], I), "iou": np.array([0.3], F), "two": np.array(2, I),
         "zero": np.array(0, I), "start": np.array([0], I), "five": np.array([5], I)}, opset=17)
    compiled = sdflow.compile(model)
    assert compiled.host_nodes == ["if_any (ai.onnx::If)"]
    for count in (30, 3, 0):
        feeds = _inputs(rng, count, 0.0)
        feeds["scores"] = feeds.pop("logits")[:, :1]
        want = run_onnxruntime(model, feeds)["first_five_float"]
        got = compiled(**feeds)[0]
        assert got.shape == want.shape == (min(count, 5) if count < 5 else want.shape[0], )
        np.testing.assert_array_equal(got, want)
