"""Failures seen on models nobody here wrote are SdflowErrors that say what is wrong, never a crash or a default:
a Range over a dim cast to float (YOLOv8's anchors) compiles, an output too large for memory is an InputError
before anything is allocated, and an output dim no input determines is refused at compile time."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

import sdflow
from sdflow.ort import run_onnxruntime

pytestmark = pytest.mark.compiled


def _model(nodes, inputs, outputs, initializers):
    graph = helper.make_graph(nodes, "failures", inputs, outputs, initializers)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_range_over_a_dim_cast_to_float_matches_onnxruntime():
    nodes = [helper.make_node("Shape", ["x"], ["shape"]), helper.make_node("Gather", ["shape", "two"], ["h"], axis=0),
             helper.make_node("Cast", ["h"], ["h_float"], to=TensorProto.FLOAT),
             helper.make_node("Range", ["zero", "h_float", "one"], ["steps"]),
             helper.make_node("Add", ["steps", "half"], ["anchors"])]
    scalars = [helper.make_tensor("two", TensorProto.INT64, [], [2])] + [
        helper.make_tensor(n, TensorProto.FLOAT, [], [v]) for n, v in (("zero", 0.0), ("one", 1.0), ("half", 0.5))]
    model = _model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, "h", "w"])],
                   [helper.make_tensor_value_info("anchors", TensorProto.FLOAT, None)], scalars)
    compiled = sdflow.compile(model)
    for h in (4, 7):
        x = np.zeros((1, 3, h, 5), np.float32)
        np.testing.assert_array_equal(compiled(x)[0], run_onnxruntime(model, {"x": x})["anchors"])


def test_outputs_too_large_for_memory_are_an_input_error():
    model = _model([helper.make_node("Tile", ["x", "repeats"], ["y"])],
                   [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 1])],
                   [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                   [helper.make_tensor("repeats", TensorProto.INT64, [2], [1, 1 << 20])])
    compiled = sdflow.compile(model)
    assert compiled(np.ones((2, 1), np.float32))[0].shape == (2, 1 << 20)
    with pytest.raises(sdflow.InputError, match=r"64.0 GiB, more than this machine's .*'n': 16384"):
        compiled(np.ones((1 << 14, 1), np.float32))


def test_an_output_dim_no_input_determines_is_refused_at_compile_time():
    """NonZero-like sizes cannot come from the inputs' shapes: never a default number at call time."""
    from sdflow.codegen.runtime import _check_outputs_are_determined
    from sdflow.ir import TensorType
    import sympy
    n, m = sympy.Symbol("n"), sympy.Symbol("unk__215")
    inputs = [("x", "x", TensorType(np.float32, [n, 2048]))]
    _check_outputs_are_determined(inputs, [("y", "y", TensorType(np.float32, [n, 214]))])
    with pytest.raises(sdflow.CompileError, match="unk__215 follow from no input"):
        _check_outputs_are_determined(inputs, [("y", "y", TensorType(np.float32, [m, 214]))])


def test_a_sequence_longer_than_the_position_table_is_an_input_error():
    """MiniLM at sequence 513 (a table of 512): the position ids sliced to the sequence length cannot hold it."""
    from onnx import numpy_helper
    nodes = [helper.make_node("Shape", ["ids"], ["shape"]), helper.make_node("Gather", ["shape", "one"], ["seq"]),
             helper.make_node("Slice", ["positions", "zero", "seq", "one"], ["position_ids"], name="positions"),
             helper.make_node("Gather", ["table", "position_ids"], ["embeddings"])]
    constants = [numpy_helper.from_array(np.arange(8, dtype=np.int64).reshape(1, 8), "positions"),
                 numpy_helper.from_array(np.ones((8, 4), np.float32), "table"),
                 numpy_helper.from_array(np.array([1]), "one"), numpy_helper.from_array(np.array([0]), "zero")]
    model = _model(nodes, [helper.make_tensor_value_info("ids", TensorProto.INT64, [1, "seq"])],
                   [helper.make_tensor_value_info("embeddings", TensorProto.FLOAT, None)], constants)
    compiled = sdflow.compile(model)
    assert compiled(np.zeros((1, 8), np.int64))[0].shape == (1, 8, 4)
    with pytest.raises(sdflow.InputError, match=r"Slice node 'positions' needs 8 >= seq, but the inputs give "
                                                r"seq = 9"):
        compiled(np.zeros((1, 9), np.int64))
