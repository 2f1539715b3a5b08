"""Each op's numpy reference (the oracle the passes are checked with) agrees with ONNX Runtime on the same
cases the compiled tests use; no native build needed."""
from __future__ import annotations

import importlib.util
import pathlib

import numpy as np
import pytest

from sdflow.frontends.onnx import import_model
from sdflow.ir import interpret
from sdflow.ort import run_onnxruntime

_spec = importlib.util.spec_from_file_location("op_cases", pathlib.Path(__file__).with_name("test_ops_compiled.py"))
_cases = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_cases)


@pytest.mark.parametrize("spec", _cases.CASES)
def test_reference_matches_onnxruntime(spec, helpers, rng):
    model, graph_inputs = _cases._build(spec, helpers)
    feeds = _cases.random_feeds(spec, graph_inputs, helpers, rng, batch=3)
    got = interpret(import_model(model), feeds)
    for name, expected in run_onnxruntime(model, feeds).items():
        assert got[name].shape == expected.shape and got[name].dtype == expected.dtype, name
        np.testing.assert_allclose(got[name], expected, rtol=1e-4, atol=1e-5, err_msg=name)
