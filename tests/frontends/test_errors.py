"""Bad models give one clear error each: never a crash, never a silently wrong graph."""
from __future__ import annotations

import numpy as np
import pytest
from onnx import helper

from sdflow.frontends.onnx import import_model
from sdflow.ir import ModelLoadError, ShapeInferenceError, UnsupportedOpError

F = np.float32


def test_truncated_file(helpers, tmp_path):
    data = helpers.load_example("mlp").build_model().SerializeToString()
    path = tmp_path / "truncated.onnx"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelLoadError, match="truncated.onnx"):
        import_model(path)


def test_garbage_bytes_and_missing_file(tmp_path):
    with pytest.raises(ModelLoadError, match="not a valid ONNX model"):
        import_model(b"\x00\x01this is not protobuf")
    with pytest.raises(ModelLoadError, match="no such model file"):
        import_model(tmp_path / "absent.onnx")
    with pytest.raises(ModelLoadError, match="cannot load a model from a int"):
        import_model(42)


def test_model_failing_the_checker(helpers):
    model = helpers.load_example("mlp").build_model()
    model.graph.node[1].input[0] = "no_such_tensor"
    with pytest.raises(ModelLoadError, match="fails the ONNX checker"):
        import_model(model)


def test_every_unsupported_op_is_named_at_once(helpers):
    nodes = [helper.make_node("DFT", ["x"], ["a"], name="dft1"), helper.make_node("DFT", ["a"], ["b"], name="dft2"),
             helper.make_node("Relu", ["b"], ["c"]), helper.make_node("Unique", ["c"], ["y"], name="uq")]
    model = helpers.make_model(nodes, [("x", F, [2, 4, 1])], [("y", F, ["k"])])
    with pytest.raises(UnsupportedOpError) as info:
        import_model(model)
    message = str(info.value)
    assert "2 unsupported op(s)" in message
    assert "ai.onnx::DFT (opset 17: signal-processing ops are not implemented yet) at node(s) 'dft1', 'dft2'" \
        in message
    assert "ai.onnx::Unique (opset 17: its output shape depends on input values: no IR op, sdflow.compile runs " \
        "it between compiled parts (sdflow.PartitionedModel)) at node(s) 'uq'" in message
    assert set(info.value.unsupported) == {("", "DFT", 17), ("", "Unique", 17)}


def test_value_dependent_shape_is_rejected_clearly(helpers):
    # Reshape whose target shape is a runtime input: the output shape cannot be known at compile time.
    model = helpers.make_model([helper.make_node("Reshape", ["x", "s"], ["y"], name="dyn")],
                               [("x", F, [2, 3]), ("s", np.int64, [2])], [("y", F, [None, None])])
    with pytest.raises(ShapeInferenceError, match="node 'dyn' \\(Reshape.*must be known at compile time"):
        import_model(model)


def test_unsupported_input_type(helpers):
    model = helpers.make_model([helper.make_node("Identity", ["x"], ["y"])], [("x", np.complex64, [2])],
                               [("y", np.complex64, [2])])
    with pytest.raises(ModelLoadError, match="input 'x': unsupported ONNX element type COMPLEX64"):
        import_model(model)


def test_training_batchnorm_is_rejected(helpers):
    inits = {k: np.ones(3, F) for k in "sbmv"}
    model = helpers.make_model([helper.make_node("BatchNormalization", ["x", "s", "b", "m", "v"], ["y"],
                                                 training_mode=1, name="bn")],
                               [("x", F, [1, 3, 2, 2])], [("y", F, [1, 3, 2, 2])], inits)
    with pytest.raises((ShapeInferenceError, ModelLoadError), match="training"):
        import_model(model)
