"""Shared fixtures: building one-node ONNX models, and checking a compiled model against ONNX Runtime."""
from __future__ import annotations

import importlib.util
import pathlib

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

import sdflow
from sdflow.codegen.build import native_builds
from sdflow.ort import compare_outputs, run_onnxruntime

ROOT = pathlib.Path(__file__).resolve().parent.parent


def make_model(nodes, inputs, outputs, initializers=(), opset=17, name="test"):
    """inputs/outputs: [(name, numpy dtype, dims)] with str dims symbolic; initializers: {name: array}."""
    def info(name, dtype, dims):
        elem = helper.np_dtype_to_tensor_dtype(np.dtype(dtype))
        return helper.make_tensor_value_info(name, elem, dims)

    graph = helper.make_graph(nodes, name, [info(*i) for i in inputs], [info(*o) for o in outputs],
                              [numpy_helper.from_array(np.asarray(v), k) for k, v in dict(initializers).items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = min(model.ir_version, 10)
    onnx.checker.check_model(model)
    return model


def random_array(rng, dtype, shape, positive=False):
    dtype = np.dtype(dtype)
    if dtype == np.bool_:
        return rng.integers(0, 2, shape).astype(bool)
    if np.issubdtype(dtype, np.integer):
        return rng.integers(-3, 4, shape).astype(dtype)
    values = rng.standard_normal(shape).astype(dtype)
    return np.abs(values) + np.asarray(0.1, dtype) if positive else values


def check_against_ort(model, feeds_list, passes="O1", tolerance=1e-4, options=None):
    """Compiles ``model`` once, runs every feed dict, compares each output with ONNX Runtime; returns the
    compiled model. Integer and bool outputs must match exactly. No feed may trigger a new native build."""
    compiled = sdflow.compile(model, passes=passes, options=options)
    builds = native_builds()
    for feeds in feeds_list:
        outputs = compiled(**feeds).as_dict()
        reference = run_onnxruntime(model, feeds)
        for name, expected in reference.items():
            got = outputs[name]
            assert got.shape == expected.shape, f"{name}: shape {got.shape} != {expected.shape}"
            assert got.dtype == expected.dtype, f"{name}: dtype {got.dtype} != {expected.dtype}"
            if expected.dtype.kind in "biu":
                np.testing.assert_array_equal(got, expected, err_msg=name)
        for comparison in compare_outputs(outputs, reference, tolerance):
            assert comparison.ok, str(comparison)
    assert native_builds() == builds, "a call triggered a rebuild"
    return compiled


def load_example(name: str):
    path = ROOT / "examples" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"sdflow_example_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def ffn_model(rng, k: int = 64, hidden: int = 96):
    """y = Relu(x @ W1 + b1) @ W2 + x over x [batch, seq, k]: a transformer layer's FFN, the quantization passes'
    test model."""
    nodes = [helper.make_node("MatMul", ["x", "w1"], ["h0"]), helper.make_node("Add", ["h0", "b1"], ["h1"]),
             helper.make_node("Relu", ["h1"], ["h"]), helper.make_node("MatMul", ["h", "w2"], ["o"]),
             helper.make_node("Add", ["o", "x"], ["y"])]
    weights = {"w1": rng.standard_normal((k, hidden)).astype(np.float32) / 8,
               "b1": rng.standard_normal(hidden).astype(np.float32),
               "w2": rng.standard_normal((hidden, k)).astype(np.float32) / 10}
    return make_model(nodes, [("x", np.float32, ["batch", "seq", k])], [("y", np.float32, ["batch", "seq", k])],
                      weights)


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


@pytest.fixture
def helpers():
    """The helpers above, for test modules (pytest's importlib mode does not let them import conftest)."""
    class Helpers:
        pass
    h = Helpers()
    h.make_model, h.random_array, h.check_against_ort, h.load_example = (make_model, random_array,
                                                                          check_against_ort, load_example)
    h.root = ROOT
    h.ffn_model = ffn_model
    return h
