"""quantize-static-int8: the products quantize-dynamic-int8 takes (MatMul, Gemm, O2's fused GEMMs by constant
float32 weights), with the activations' scale and zero point fixed from calibration instead of found at run time:
each product's input is captured on the calibration feeds (the graph run with the ops' numpy references, as
quantize-weights' GPTQ does), its range chosen by ``calibrate``, and the product becomes a QuantizedMatMul whose
a_scale / a_zero_point inputs carry it (uint8 codes, saturating outside the range: QuantizeLinear's rule). Weights
as quantize-dynamic-int8 makes them (int8, symmetric, per column).

Ranges (always holding 0, as uint8 codes with a zero point need):
- ``minmax``: the smallest and largest value seen;
- ``percentile``: the ``percentile``-th and (100 - ``percentile``)-th percentiles of the values seen;
- ``entropy``: the threshold T on |x| whose 128-level quantization of the histogram of |x| (2048 bins) is closest
  to the clipped histogram in KL divergence (TensorRT's calibration, as ONNX Runtime's entropy calibrator does),
  the range [max(min, -T), min(max, T)]."""
from __future__ import annotations

import dataclasses

import numpy as np

from sdflow.ir import Graph, PipelineError
from ..infra import Pass, PassContext, PassResult, register_pass
from .quantize_dynamic_int8 import find_products, quantize_products
from .quantize_weights import _Run

__all__ = ["QuantizeStaticInt8", "activation_range", "calibrate_activations", "scale_and_zero", "METHODS"]

METHODS = ("minmax", "percentile", "entropy")


@register_pass
@dataclasses.dataclass(frozen=True)
class QuantizeStaticInt8(Pass):
    """Products by constant weights  =>  int8 weights and activations, the activations' scales from calibration."""

    name = "quantize-static-int8"
    calibrate: str = "minmax"  # minmax | percentile | entropy
    percentile: float = 99.99  # calibrate=percentile: the upper percentile kept
    per_channel: bool = True  # one weight scale per output column (else one per matrix)
    reduce_range: bool = True  # weight codes in [-64, 64] (exact vpmaddubsw on CPUs without VNNI)
    min_elements: int = 4096  # smaller weights stay float32

    def __post_init__(self):
        if self.calibrate not in METHODS:
            raise PipelineError(f"quantize-static-int8: calibrate must be one of {', '.join(METHODS)}, not "
                                f"{self.calibrate!r}")
        if not 50 < self.percentile <= 100:
            raise PipelineError(f"quantize-static-int8: percentile must be in (50, 100], not {self.percentile}")
        if self.min_elements < 0:
            raise PipelineError(f"quantize-static-int8: min_elements must be >= 0, not {self.min_elements}")

    def check_calibration(self, calibration) -> None:
        if not calibration:
            raise PipelineError("quantize-static-int8 needs calibration inputs: sdflow.compile(..., "
                                "calibration=[feeds, ...]) or --calibration FILE.npz")

    def apply(self, graph: Graph, ctx: PassContext) -> PassResult:
        self.check_calibration(ctx.calibration)
        notes: list[str] = []
        targets = find_products(graph, self.min_elements, notes)
        if not targets:
            return PassResult(False, {"products": 0}, notes if ctx.explain else [])
        activations = calibrate_activations(graph, targets, ctx.calibration, self.calibrate, self.percentile, notes)
        weights = quantize_products(graph, targets, self.per_channel, self.reduce_range, False, activations)
        return PassResult(True, {"products": len(targets), "weights": weights, "activations": len(activations)},
                          notes if ctx.explain else [])


def calibrate_activations(graph: Graph, targets, calibration, method: str, percentile: float,
                          notes: list[str]) -> dict[str, tuple[np.float32, np.uint8]]:
    """Activation tensor -> (scale, zero point) of every target product's input (``find_products``' tuples), from
    its values on the ``calibration`` feeds (the graph run with the numpy references)."""
    wanted = {node: a for node, a, _, _ in targets}
    seen: dict[str, list[np.ndarray]] = {}
    for feeds in calibration:
        run = _Run(graph, feeds)
        for node in graph.op_nodes():
            if node in wanted:
                seen.setdefault(wanted[node], []).append(np.asarray(run.values[wanted[node]], np.float32).ravel())
            run.step(node)
    activations = {}
    for tensor, values in seen.items():
        low, high = activation_range(np.concatenate(values), method, percentile)
        activations[tensor] = scale_and_zero(low, high)
        notes.append(f"{tensor}: range [{low:.4g}, {high:.4g}] ({method})")
    return activations


def scale_and_zero(low: float, high: float) -> tuple[np.float32, np.uint8]:
    """uint8 scale and zero point of the range [low, high] widened to hold 0 (scale 1 for a range of 0)."""
    low, high = np.float32(min(low, 0.0)), np.float32(max(high, 0.0))
    scale = np.float32((high - low) / np.float32(255))
    if scale == 0:
        return np.float32(1), np.uint8(0)
    return scale, np.uint8(np.clip(np.rint(-low / scale), 0, 255))


def activation_range(values: np.ndarray, method: str, percentile: float = 99.99) -> tuple[float, float]:
    """The range of ``values`` (flat) that the activations' codes cover, by ``method`` (see the module)."""
    low, high = float(values.min(initial=0.0)), float(values.max(initial=0.0))
    if method == "minmax" or values.size == 0:
        return low, high
    if method == "percentile":
        return float(np.percentile(values, 100 - percentile)), float(np.percentile(values, percentile))
    threshold = _entropy_threshold(np.abs(values))
    return max(low, -threshold), min(high, threshold)


def _entropy_threshold(magnitudes: np.ndarray, bins: int = 2048, levels: int = 128) -> float:
    """TensorRT's KL-divergence threshold of a distribution of magnitudes."""
    top = float(magnitudes.max(initial=0.0))
    if top == 0:
        return 0.0
    histogram, edges = np.histogram(magnitudes, bins=bins, range=(0.0, top))
    histogram = histogram.astype(np.float64)
    best, best_divergence = bins, np.inf
    for i in range(levels, bins + 1, 16):
        reference = histogram[:i].copy()
        reference[-1] += histogram[i:].sum()  # the clipped values land in the last bin
        # The candidate: the first i bins merged into `levels` levels, each level spread evenly over its non-empty
        # bins.
        candidate = np.zeros(i)
        for chunk in np.array_split(np.arange(i), levels):
            present = histogram[chunk] > 0
            if present.any():
                candidate[chunk[present]] = histogram[chunk].sum() / present.sum()
        p, q = reference / reference.sum(), candidate / max(candidate.sum(), 1e-300)
        mask = p > 0
        if np.any(q[mask] == 0):
            continue
        divergence = float(np.sum(p[mask] * np.log(p[mask] / q[mask])))
        if divergence < best_divergence:
            best, best_divergence = i, divergence
    return float(edges[best]) if best < len(edges) else top
