"""ONNX Runtime as the reference: run a model, compare outputs with sdflow's, time both the same way."""
from __future__ import annotations

import dataclasses
import statistics
import time

import numpy as np
import onnx

__all__ = ["run_onnxruntime", "Comparison", "compare_outputs", "median_seconds", "ort_session"]


def ort_session(model, threads: int | None = None, profile_prefix: str | None = None,
                optimized_path: str | None = None):
    """An ONNX Runtime CPU session (ORT_ENABLE_ALL). ``profile_prefix``: record ORT's per-node profile
    (``session.end_profiling()`` writes it); ``optimized_path``: save the graph ORT optimised (its node names)."""
    import onnxruntime as ort
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    if profile_prefix:
        options.enable_profiling = True
        options.profile_file_prefix = profile_prefix
    if optimized_path:
        options.optimized_model_filepath = optimized_path
    data = model.SerializeToString() if isinstance(model, onnx.ModelProto) else (
        model if isinstance(model, bytes) else open(model, "rb").read())
    return ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])


def run_onnxruntime(model, feeds: dict[str, np.ndarray], threads: int | None = None) -> dict[str, np.ndarray]:
    session = ort_session(model, threads)
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(names, feeds)))


@dataclasses.dataclass
class Comparison:
    """One output compared with the reference: max abs error against max(1, |reference|)."""

    name: str
    shape: tuple
    max_abs_error: float
    reference_magnitude: float
    tolerance: float

    @property
    def ok(self) -> bool:
        return self.max_abs_error <= self.tolerance * max(1.0, self.reference_magnitude)

    def __str__(self) -> str:
        verdict = "ok" if self.ok else "MISMATCH"
        return (f"{self.name:<16} {str(list(self.shape)):<18} max|ref| {self.reference_magnitude:9.3e}  "
                f"max abs err {self.max_abs_error:9.3e}  {verdict}")


def compare_outputs(actual: dict[str, np.ndarray], reference: dict[str, np.ndarray],
                    tolerance: float = 1e-4) -> list[Comparison]:
    results = []
    for name, expected in reference.items():
        got = np.asarray(actual[name])
        if got.shape != expected.shape:
            results.append(Comparison(name, got.shape, float("inf"), 0.0, tolerance))
            continue
        error, magnitude = _error_and_magnitude(expected.astype(np.float64), got.astype(np.float64))
        results.append(Comparison(name, expected.shape, error, magnitude, tolerance))
    return results


def _error_and_magnitude(expected: np.ndarray, got: np.ndarray) -> tuple[float, float]:
    """Max abs error where NaN matches NaN and an infinity matches the same infinity (ONNX Runtime's NaN and inf
    are results like any other); a NaN or inf on one side only is an infinite error. The magnitude is that of the
    finite reference values."""
    if not expected.size:
        return 0.0, 0.0
    same = (expected == got) | (np.isnan(expected) & np.isnan(got))
    with np.errstate(invalid="ignore"):
        difference = np.where(same, 0.0, np.abs(expected - got))
    difference[np.isnan(difference)] = np.inf
    finite = np.abs(expected[np.isfinite(expected)])
    return float(difference.max()), float(finite.max()) if finite.size else 0.0


def median_seconds(function, repeats: int = 20, warmup: int = 3) -> float:
    for _ in range(warmup):
        function()
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)
