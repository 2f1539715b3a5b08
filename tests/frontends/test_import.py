"""Importing ONNX: sources (path, bytes, ModelProto, external data), symbols, constants, shape inference with
symbolic dims, value tracking through shape arithmetic, opset conversion."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import helper

from sdflow.frontends.onnx import import_model
from sdflow.ir import print_graph, verify

F, I = np.float32, np.int64


def test_sources_agree(helpers, tmp_path):
    model = helpers.load_example("mlp").build_model()
    onnx.save(model, tmp_path / "m.onnx")
    texts = {print_graph(import_model(src)) for src in (model, model.SerializeToString(), tmp_path / "m.onnx",
                                                        str(tmp_path / "m.onnx"))}
    assert len(texts) == 1


def test_external_data(helpers, tmp_path):
    model = helpers.load_example("mlp").build_model()
    expected = onnx.numpy_helper.to_array(model.graph.initializer[0])
    onnx.save(model, tmp_path / "ext.onnx", save_as_external_data=True, all_tensors_to_one_file=True,
              location="weights.bin", size_threshold=0)
    assert (tmp_path / "weights.bin").stat().st_size > 30_000
    graph = import_model(tmp_path / "ext.onnx")
    np.testing.assert_array_equal(graph.constant("w1"), expected)


def test_constants_are_owned_by_the_graph(helpers):
    graph = import_model(helpers.load_example("transformer").build_model())
    assert graph.inputs == ["x", "mask"]
    assert "q_w" in graph.constants and graph.constants["scale"].shape == ()


def test_dim_params_and_unknown_dims_become_symbols(helpers):
    model = helpers.make_model([helper.make_node("Add", ["a", "b"], ["y"])],
                               [("a", F, ["batch", None]), ("b", F, [1, None])], [("y", F, [None, None])])
    graph = import_model(model)
    assert str(graph.tensor_type("a")) == "f32[batch,a_dim1]"
    assert str(graph.tensor_type("b")) == "f32[1,b_dim1]"
    assert graph.symbols == ["a_dim1", "b_dim1", "batch"]


def test_symbolic_shape_inference_through_reshape_slice_concat_conv(helpers):
    nodes = [
        helper.make_node("Reshape", ["x", "flat"], ["r"]),  # [N, 4, 6] -> [N, 24]
        helper.make_node("Slice", ["r", "st", "en", "ax"], ["s"]),  # [N, 24] -> [N, 20]
        helper.make_node("Concat", ["s", "s"], ["c"], axis=0),  # [2N, 20]
        helper.make_node("Conv", ["img", "w"], ["conv"], strides=[2, 2], pads=[1, 1, 1, 1]),
        helper.make_node("MatMul", ["m1", "m2"], ["mm"]),
    ]
    model = helpers.make_model(
        nodes, [("x", F, ["N", 4, 6]), ("img", F, ["N", 3, 9, 9]), ("m1", F, ["N", 1, 2, 3]),
                ("m2", F, [5, 3, 4])],
        [("c", F, [None, None]), ("conv", F, [None] * 4), ("mm", F, [None] * 4)],
        {"flat": np.array([0, -1], I), "st": np.array([2], I), "en": np.array([-2], I), "ax": np.array([1], I),
         "w": np.zeros((8, 3, 3, 3), F)})
    graph = import_model(model)
    assert str(graph.tensor_type("r")) == "f32[N,24]"
    assert str(graph.tensor_type("s")) == "f32[N,20]"
    assert str(graph.tensor_type("c")) == "f32[2*N,20]"
    assert str(graph.tensor_type("conv")) == "f32[N,8,5,5]"
    assert str(graph.tensor_type("mm")) == "f32[N,5,2,4]"


def test_value_tracking_of_shape_arithmetic(helpers):
    graph = import_model(helpers.load_example("transformer").build_model())
    assert str(graph.tensor_type("q_heads")) == "f32[batch,16,4,16]"
    assert str(graph.tensor_type("context")) == "f32[batch,16,64]"


def test_old_opset_is_converted(helpers, rng):
    # Opset 11: Squeeze takes its axes as an attribute; sdflow's minimum is 13.
    model = helpers.make_model([helper.make_node("Squeeze", ["x"], ["y"], axes=[1])], [("x", F, ["N", 1, 3])],
                               [("y", F, ["N", 3])], opset=11)
    graph = import_model(model)
    verify(graph)
    node = graph.op_nodes()[0]
    assert node.opset == 13 and graph.node_inputs(node)[1] is not None
    compiled = helpers.check_against_ort(model, [{"x": rng.standard_normal((2, 1, 3)).astype(F)}])
    assert compiled.graph.op_nodes()[0].opset == 13


@pytest.mark.parametrize("opset", [13, 17, 20])
def test_node_defaults_follow_the_models_opset(helpers, opset):
    model = helpers.make_model([helper.make_node("Softmax", ["x"], ["y"])], [("x", F, [2, 3])], [("y", F, [2, 3])],
                               opset=opset)
    node = import_model(model).op_nodes()[0]
    assert node.attr("axis") == -1 and node.opset == opset


def test_an_old_ir_file_whose_initializers_are_not_inputs_loads_as_onnx_runtime_reads_it():
    """ONNX Runtime's own sample mul_1.onnx (IR 3) keeps its weight W out of the graph inputs, which IR 3 forbids
    and the checker refuses; ONNX Runtime reads W as a constant, and so does sdflow (IR 4's meaning)."""
    import pathlib

    import onnxruntime
    import sdflow
    path = pathlib.Path(onnxruntime.__file__).parent / "datasets" / "mul_1.onnx"
    model = onnx.load(str(path))
    assert model.ir_version < 4 and "W" not in {i.name for i in model.graph.input}
    graph = import_model(str(path))
    assert [graph.onnx_name(t) for t in graph.inputs] == ["X"] and len(graph.constants) == 1  # W, a constant
    x = np.arange(6, dtype=F).reshape(3, 2)
    expected = onnxruntime.InferenceSession(str(path)).run(None, {"X": x})[0]
    np.testing.assert_allclose(sdflow.compile(str(path))(x)[0], expected)


def test_a_model_of_ml_ops_only_names_them_all():
    """ONNX Runtime's sample logreg_iris.onnx holds only ai.onnx.ml ops (opset 1, no default domain): there is
    nothing to convert to opset 13, so the import lists its three unsupported ops instead of failing in the
    converter."""
    import pathlib

    import onnxruntime
    import sdflow
    path = pathlib.Path(onnxruntime.__file__).parent / "datasets" / "logreg_iris.onnx"
    with pytest.raises(sdflow.UnsupportedOpError, match="LinearClassifier.*Normalizer.*ZipMap"):
        import_model(str(path))
