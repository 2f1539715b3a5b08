"""The operator-boundary data-movement analysis against hand formulas: every input read once, every output
written once, fp32 = 4 bytes, symbolic in the model's dims."""
from __future__ import annotations

import numpy as np
import pytest
from onnx import helper

from sdflow.frontends.onnx import import_model
from sdflow.passes.analysis import operator_traffic

F = np.float32


def _traffic(helpers, node, inputs, outputs, initializers=()):
    (record, ) = operator_traffic(import_model(helpers.make_model([node], inputs, outputs, initializers)))
    return record


def test_gemm_reads_both_operands_and_writes_the_product(helpers):
    m, k, n = 128, 768, 3072
    record = _traffic(helpers, helper.make_node("MatMul", ["a", "w"], ["y"]), [("a", F, ["m", k])],
                      [("y", F, ["m", n])], {"w": np.zeros((k, n), F)})
    assert record.op_type == "MatMul"
    assert record.evaluate({"m": m}) == (4 * (m * k + k * n), 4 * m * n)
    assert str(record.bytes_written) == f"{4 * n}*m"


def test_softmax_streams_its_tensor_in_and_out(helpers):
    b, h, s = 8, 12, 128
    record = _traffic(helpers, helper.make_node("Softmax", ["x"], ["y"], axis=-1), [("x", F, ["b", h, s, s])],
                      [("y", F, ["b", h, s, s])])
    assert record.evaluate({"b": b}) == (4 * b * h * s * s, 4 * b * h * s * s)


def test_layernorm_reads_input_scale_bias_and_writes_one_tensor(helpers):
    rows, width = 8 * 128, 768
    record = _traffic(helpers, helper.make_node("LayerNormalization", ["x", "g", "beta"], ["y"], axis=-1),
                      [("x", F, ["rows", width])], [("y", F, ["rows", width])],
                      {"g": np.ones(width, F), "beta": np.zeros(width, F)})
    assert record.evaluate({"rows": rows}) == (4 * (rows * width + 2 * width), 4 * rows * width)
    assert record.bytes_moved.subs({s: rows for s in record.bytes_moved.free_symbols}) == 4 * (2 * rows * width
                                                                                               + 2 * width)


def test_an_unbound_dim_is_named(helpers):
    record = _traffic(helpers, helper.make_node("Relu", ["x"], ["y"]), [("x", F, ["batch", 4])],
                      [("y", F, ["batch", 4])])
    with pytest.raises(KeyError, match="batch"):
        record.evaluate({})
