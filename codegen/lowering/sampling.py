"""Resize, GridSample and AffineGrid: calls of codegen/kernels/sampling.h (Resize's passes planned by
``ir.ops.sampling.resize_plan``); RoiAlign: codegen/kernels/roi_align.h."""
from __future__ import annotations

from sdflow.ir.ops.sampling import GRID_SAMPLE_MODES, resize_plan
from sdflow.ir.types import TensorType
from ._expansion import Ctx, cexpr, expansion, product

_MODES = {"nearest": 0, "linear": 1, "cubic": 2}
_TRANSFORMS = {"half_pixel": 0, "half_pixel_symmetric": 1, "pytorch_half_pixel": 2, "align_corners": 3,
               "asymmetric": 4, "tf_crop_and_resize": 5}
_NEAREST = {"round_prefer_floor": 0, "round_prefer_ceil": 1, "floor": 2, "ceil": 3}


def _double(value: float) -> str:
    return repr(float(value)) if value == value and abs(value) != float("inf") else \
        ("std::numeric_limits<double>::quiet_NaN()" if value != value else
         f"{'-' if value < 0 else ''}std::numeric_limits<double>::infinity()")


@expansion("Resize")
def resize(ctx: Ctx):
    """One call of ``sdflow_kernels::resize`` (codegen/kernels/sampling.h), its passes planned here."""
    x, y = ctx.connector("in", 0), ctx.connector("out", 0)
    x_desc = ctx.desc(x)
    x_type = TensorType(x_desc.dtype.as_numpy_dtype(), ctx.shape(x))
    plan = resize_plan(ctx.node, x_type, ctx.static(1), ctx.static(2), ctx.static(3))
    node = ctx.node
    x_ptr, y_ptr = ctx.ptr(x), ctx.ptr(y)
    shape = list(x_type.shape)
    if not plan:  # every axis keeps its length: a copy
        return ctx.tasklet(f"std::copy({x_ptr}, {x_ptr} + {cexpr(product(shape))}, {y_ptr});")
    mode = (f"{_MODES[node.attr('mode', 'nearest')]}, "
            f"{_TRANSFORMS[node.attr('coordinate_transformation_mode', 'half_pixel')]}, "
            f"{_NEAREST.get(node.attr('nearest_mode', 'round_prefer_floor'), 0)}, "
            f"{'true' if node.attr('antialias', 0) else 'false'}, "
            f"{'true' if node.attr('exclude_outside', 0) else 'false'}, "
            f"{_double(node.attr('cubic_coeff_a', -0.75))}, {_double(node.attr('extrapolation_value', 0.0))}")
    axes = []
    for axis in plan:
        outer, inner = product(shape[:axis.axis]), product(shape[axis.axis + 1:])
        shape[axis.axis] = axis.out_dim
        scale = _double(axis.scale) if axis.scale is not None else \
            f"(double)({cexpr(axis.out_dim)}) / (double)({cexpr(axis.in_dim)})"
        axes.append(f"{{{cexpr(outer)}, {cexpr(axis.in_dim)}, {cexpr(axis.out_dim)}, {cexpr(inner)}, {scale}, "
                    f"{_double(axis.roi[0])}, {_double(axis.roi[1])}}}")
    code = (f"const sdflow_kernels::ResizeMode mode_{{{mode}}};\n"
            f"const sdflow_kernels::ResizeAxis axes_[] = {{{', '.join(axes)}}};\n"
            f"sdflow_kernels::resize({x_ptr}, {y_ptr}, mode_, axes_, {len(axes)});\n")
    return ctx.tasklet(code, includes='#include "sampling.h"')


@expansion("GridSample")
def grid_sample(ctx: Ctx):
    """One call of ``sdflow_kernels::grid_sample`` (codegen/kernels/sampling.h)."""
    x, grid, y = ctx.connector("in", 0), ctx.connector("in", 1), ctx.connector("out", 0)
    x_shape, grid_shape = ctx.shape(x), ctx.shape(grid)
    rank = len(x_shape) - 2
    dims = list(x_shape[2:]) + [1] * (3 - rank)
    mode = {"nearest": 0, "linear": 1, "cubic": 2}[GRID_SAMPLE_MODES[ctx.node.attr("mode", "linear")]]
    padding = {"zeros": 0, "border": 1, "reflection": 2}[ctx.node.attr("padding_mode", "zeros")]
    align = "true" if ctx.node.attr("align_corners", 0) else "false"
    geometry = (f"{rank}, {cexpr(x_shape[0])}, {cexpr(x_shape[1])}, {cexpr(product(grid_shape[1:-1]))}, "
                f"{{{', '.join(cexpr(d) for d in dims)}}}, {mode}, {padding}, {align}")
    code = (f"const sdflow_kernels::GridSampleGeometry geometry_{{{geometry}}};\n"
            f"sdflow_kernels::grid_sample({ctx.ptr(x)}, {ctx.ptr(grid)}, {ctx.ptr(y)}, geometry_);\n")
    return ctx.tasklet(code, includes='#include "sampling.h"')


@expansion("AffineGrid")
def affine_grid(ctx: Ctx):
    """One call of ``sdflow_kernels::affine_grid`` (codegen/kernels/sampling.h)."""
    theta, grid = ctx.connector("in", 0), ctx.connector("out", 0)
    shape = ctx.shape(grid)  # [N, spatial..., k]
    spatial = shape[1:-1]
    align = "true" if ctx.node.attr("align_corners", 0) else "false"
    code = (f"const int64_t sizes_[] = {{{', '.join(f'(int64_t)({cexpr(d)})' for d in spatial)}}};\n"
            f"sdflow_kernels::affine_grid({ctx.ptr(theta)}, {ctx.ptr(grid)}, (int64_t)({cexpr(shape[0])}), sizes_, "
            f"{len(spatial)}, {align});\n")
    return ctx.tasklet(code, includes='#include "sampling.h"')


@expansion("RoiAlign")
def roi_align(ctx: Ctx):
    """One call of ``sdflow_kernels::roi_align`` (codegen/kernels/roi_align.h); batch indices outside the batch
    are clamped into it (a graph input's are refused before the call: runtime._index_bounds)."""
    from sdflow.ir.ops.sampling import RoiAlign
    x, rois, indices, y = (ctx.connector(k, p) for k, p in (("in", 0), ("in", 1), ("in", 2), ("out", 0)))
    n, channels, height, width = (cexpr(d) for d in ctx.shape(x))
    num_rois = cexpr(ctx.shape(rois)[0])
    node = ctx.node
    geometry = (f"{num_rois}, {channels}, {height}, {width}, {int(node.attr('output_height', 1))}, "
                f"{int(node.attr('output_width', 1))}, {int(node.attr('sampling_ratio', 0))}, "
                f"{float(node.attr('spatial_scale', 1.0))!r}f, {'true' if RoiAlign.half_pixel(node) else 'false'}, "
                f"{'true' if node.attr('mode', 'avg') == 'max' else 'false'}")
    code = (f"const sdflow_kernels::RoiAlignGeometry geometry_{{{geometry}}};\n"
            f"sdflow_kernels::roi_align_clamped({ctx.ptr(x)}, {ctx.ptr(rois)}, {ctx.ptr(indices)}, (int64_t)({n}), "
            f"geometry_, {ctx.ptr(y)});\n")
    return ctx.tasklet(code, includes='#include "roi_align.h"\n')
