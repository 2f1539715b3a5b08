"""Resampling: Resize (nearest / linear / cubic, every coordinate transformation, antialias, axes, aspect-ratio
policies), GridSample (2-D and 3-D, nearest / linear / cubic, zeros / border / reflection padding) and
AffineGrid (the sampling grid of an affine transformation). The numpy reference is ONNX's own (onnx.reference), whose semantics the conformance suite follows."""
from __future__ import annotations

import dataclasses

import numpy as np
import sympy

from ..errors import ShapeInferenceError
from ..types import Dim, TensorType, to_dim
from ._base import Op, normalize_axis, onnx_reference, op, static_int_list

__all__ = ["ResizeAxis", "resize_plan", "RESIZE_MODES", "COORDINATE_MODES", "NEAREST_MODES"]

RESIZE_MODES = ("nearest", "linear", "cubic")
COORDINATE_MODES = ("half_pixel", "half_pixel_symmetric", "pytorch_half_pixel", "align_corners", "asymmetric",
                    "tf_crop_and_resize")
NEAREST_MODES = ("round_prefer_floor", "round_prefer_ceil", "floor", "ceil")


@dataclasses.dataclass(frozen=True)
class ResizeAxis:
    """One axis Resize changes: its output length, the scale of the coordinate transformation (None: the
    output length over the input length, computed at run time) and its region of interest."""

    axis: int
    in_dim: Dim
    out_dim: Dim
    scale: float | None
    roi: tuple[float, float]


def _given(value) -> np.ndarray | None:
    return None if value is None or np.size(value) == 0 else np.asarray(value).ravel()


def resize_plan(node, x: TensorType, roi, scales, sizes) -> list[ResizeAxis]:
    """The axes Resize resamples (identities left out), from the compile-time values of roi/scales/sizes."""
    mode = node.attr("mode", "nearest")
    transform = node.attr("coordinate_transformation_mode", "half_pixel")
    if mode not in RESIZE_MODES:
        raise ShapeInferenceError(f"Resize: unknown mode {mode!r}")
    if transform not in COORDINATE_MODES:
        raise ShapeInferenceError(f"Resize: unknown coordinate_transformation_mode {transform!r}")
    if mode == "nearest" and node.attr("nearest_mode", "round_prefer_floor") not in NEAREST_MODES:
        raise ShapeInferenceError(f"Resize: unknown nearest_mode {node.attr('nearest_mode')!r}")
    if mode == "nearest" and node.attr("antialias", 0):
        raise ShapeInferenceError("Resize: antialias applies to linear and cubic modes only")
    roi, scales, sizes = _given(roi), _given(scales), _given(sizes)
    if (scales is None) == (sizes is None):
        raise ShapeInferenceError("Resize: exactly one of scales and sizes must be given (and known at compile time)")
    axes = [normalize_axis(a, x.rank) for a in (node.attr("axes") or range(x.rank))]
    count = len(scales if scales is not None else sizes)
    if count != len(axes):
        raise ShapeInferenceError(f"Resize: {count} scales/sizes for {len(axes)} axes")
    if roi is not None and transform == "tf_crop_and_resize" and len(roi) != 2 * len(axes):
        raise ShapeInferenceError(f"Resize: roi has {len(roi)} values, expected {2 * len(axes)}")
    if roi is None and transform == "tf_crop_and_resize":
        raise ShapeInferenceError("Resize: tf_crop_and_resize needs roi")
    in_dims = [x.shape[a] for a in axes]
    if scales is not None:
        if any(s <= 0 for s in scales):
            raise ShapeInferenceError(f"Resize: scales must be positive, got {scales.tolist()}")
        factors = [float(s) for s in scales]
        # floor(scale * length) in double precision, as ONNX (and ONNX Runtime) compute it.
        out_dims = [int(np.floor(f * d)) if isinstance(d, int) else to_dim(sympy.floor(sympy.Rational(f) * d))
                    for f, d in zip(factors, in_dims)]
    else:
        # Sizes computed from a symbolic shape (Shape -> Gather -> Concat) are symbolic dims.
        out_dims = [to_dim(s if isinstance(s, sympy.Basic) else int(s)) for s in sizes]
        factors = [None] * len(axes)
        policy = node.attr("keep_aspect_ratio_policy", "stretch")
        if policy != "stretch":
            if policy not in ("not_larger", "not_smaller") or not all(isinstance(d, int) for d in in_dims + out_dims):
                raise ShapeInferenceError(f"Resize: keep_aspect_ratio_policy {policy!r} needs a known policy and "
                                          "static input lengths on the resized axes")
            ratios = [o / d for o, d in zip(out_dims, in_dims)]
            scale = min(ratios) if policy == "not_larger" else max(ratios)
            factors = [scale] * len(axes)
            out_dims = [int(scale * d + 0.5) for d in in_dims]
    plan = []
    for i, (axis, in_dim, out_dim, factor) in enumerate(zip(axes, in_dims, out_dims, factors)):
        if isinstance(out_dim, int) and out_dim < 0:
            raise ShapeInferenceError(f"Resize: negative output length {out_dim} on axis {axis}")
        region = (float(roi[i]), float(roi[len(axes) + i])) if roi is not None and \
            transform == "tf_crop_and_resize" else (0.0, 1.0)
        identity = out_dim == in_dim and (factor is None or np.isclose(factor, 1.0)) and region == (0.0, 1.0)
        if not identity:
            plan.append(ResizeAxis(axis, in_dim, out_dim, factor, region))
    return plan


@op("Resize", since=11)
class Resize(Op):
    value_inputs = (1, 2, 3)

    @classmethod
    def infer(cls, node, inputs, values):
        x = inputs[0]
        values = list(values) + [None] * (4 - len(values))
        for position, name in ((1, "roi"), (2, "scales"), (3, "sizes")):
            if position < len(inputs) and inputs[position] is not None and values[position] is None:
                raise ShapeInferenceError(f"Resize: {name} must be known at compile time")
        shape = list(x.shape)
        for axis in resize_plan(node, x, *values[1:4]):
            shape[axis.axis] = axis.out_dim
        return [TensorType(x.dtype, shape)]

    @classmethod
    def reference(cls, node, x, roi=None, scales=None, sizes=None):
        return onnx_reference(node, x, roi, scales, sizes)


GRID_SAMPLE_MODES = {"nearest": "nearest", "linear": "linear", "bilinear": "linear", "cubic": "cubic",
                     "bicubic": "cubic"}


@op("GridSample", since=16)
class GridSample(Op):
    @classmethod
    def infer(cls, node, inputs, values):
        x, grid = inputs[0], inputs[1]
        spatial = x.rank - 2
        if spatial not in (2, 3) or grid.rank != x.rank or (isinstance(grid.shape[-1], int)
                                                             and grid.shape[-1] != spatial):
            raise ShapeInferenceError(f"GridSample: X {x} and grid {grid} do not match (2-D or 3-D sampling)")
        if node.attr("mode", "linear") not in GRID_SAMPLE_MODES:
            raise ShapeInferenceError(f"GridSample: unknown mode {node.attr('mode')!r}")
        if node.attr("padding_mode", "zeros") not in ("zeros", "border", "reflection"):
            raise ShapeInferenceError(f"GridSample: unknown padding_mode {node.attr('padding_mode')!r}")
        if node.attr("mode", "linear") in ("cubic", "bicubic") and spatial != 2:
            raise ShapeInferenceError("GridSample: cubic mode needs 4-D input")
        return [TensorType(x.dtype, [x.shape[0], x.shape[1]] + list(grid.shape[1:-1]))]

    @classmethod
    def reference(cls, node, x, grid):
        return onnx_reference(node, x, grid)


@op("AffineGrid", since=20)
class AffineGrid(Op):
    """theta [N, 2, 3] (or [N, 3, 4]) applied to the normalised [-1, 1] coordinates of an output of ``size``
    (N, C, H, W) (or (N, C, D, H, W)): grid [N, H, W, 2] (or [N, D, H, W, 3])."""

    value_inputs = (1, )

    @classmethod
    def infer(cls, node, inputs, values):
        theta = inputs[0]
        size = static_int_list(values[1], "AffineGrid: size")
        spatial = len(size) - 2
        if spatial not in (2, 3) or theta.rank != 3 or theta.shape[1:] != (spatial, spatial + 1):
            raise ShapeInferenceError(f"AffineGrid: theta {theta} does not fit size {size}")
        return [TensorType(theta.dtype, [theta.shape[0]] + size[2:] + [spatial])]

    @classmethod
    def reference(cls, node, theta, size):
        spatial = [int(v) for v in np.asarray(size).ravel()[2:]]
        axes = []
        for length in reversed(spatial):  # x (the last dim) first, as the grid stores it
            if node.attr("align_corners", 0):
                axes.append(np.linspace(-1, 1, length) if length > 1 else np.array([-1.0]))
            else:
                axes.append((np.arange(length) * 2 + 1) / length - 1)
        coords = np.meshgrid(*reversed(axes), indexing="ij")[::-1]  # each [spatial...], x first
        homogeneous = np.stack(list(coords) + [np.ones(spatial)], axis=-1)  # [spatial..., k + 1]
        grid = np.einsum("nij,...j->n...i", theta.astype(np.float64), homogeneous)
        return [grid.astype(theta.dtype)]


@op("RoiAlign", since=10)
class RoiAlign(Op):
    """Regions of interest of a feature map pooled to a fixed grid (Faster R-CNN's box head): X [N, C, H, W],
    rois [R, 4] as (x1, y1, x2, y2), batch_indices [R] -> [R, C, output_height, output_width]."""

    @classmethod
    def infer(cls, node, inputs, values):
        x, rois, batch_indices = inputs[:3]
        if x.rank != 4 or rois.rank != 2 or batch_indices.rank != 1:
            raise ShapeInferenceError(f"RoiAlign needs X [N, C, H, W], rois [R, 4] and batch_indices [R], got {x}, "
                                      f"{rois} and {batch_indices}")
        if x.dtype != np.float32:
            raise ShapeInferenceError(f"RoiAlign: {x.dtype} inputs are not supported (float32)")
        shape = [rois.shape[0], x.shape[1], node.attr("output_height", 1), node.attr("output_width", 1)]
        return [TensorType(x.dtype, shape)]

    @classmethod
    def reference(cls, node, x, rois, batch_indices):
        return onnx_reference(node, x, rois, batch_indices)

    @staticmethod
    def half_pixel(node) -> bool:
        """coordinate_transformation_mode: half_pixel by default from opset 16; opset 10 has output_half_pixel."""
        default = "half_pixel" if node.opset >= 16 else "output_half_pixel"
        mode = node.attr("coordinate_transformation_mode", None) if node.opset >= 16 else None
        return (mode or default) == "half_pixel"
