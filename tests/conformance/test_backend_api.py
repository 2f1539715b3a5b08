"""onnx.backend.test.BackendTest drives sdflow through the standard backend API, as it drives any runtime."""
from __future__ import annotations

import onnx.backend.test
import pytest

import sdflow.backend

pytestmark = pytest.mark.compiled

CASES = {"test_relu_cpu", "test_add_bcast_cpu", "test_matmul_2d_cpu", "test_softmax_axis_1_cpu", "test_gather_0_cpu"}

_suite = onnx.backend.test.BackendTest(sdflow.backend, __name__)
for _case in CASES:
    _suite.include(f"^{_case}$")
for _name, _cls in _suite.test_cases.items():
    # BackendTest adds every ONNX case to its classes and skips the ones not included; keep only ours.
    for _attr in [a for a in vars(_cls) if a.startswith("test_") and a not in CASES]:
        delattr(_cls, _attr)
    if any(a.startswith("test_") for a in vars(_cls)):
        globals()[_name] = _cls


def test_the_backend_runs_cpu_only():
    assert sdflow.backend.supports_device("CPU") and not sdflow.backend.supports_device("CUDA")
