"""Reductions and normalisations: a parallel map over the kept axes, each iteration one call of
codegen/kernels/reduce.h on its row or block."""
from __future__ import annotations

from sdflow.ir.ops.reduction import reduce_axes
from sdflow.ir.ops._base import normalize_axis
from ._expansion import Ctx, add_map, cexpr, contiguous_strides, expansion, index_ranges, int_array, product


def _subset(shape, full_axes, fixed_axes=()) -> str:
    """Memlet subset: whole range on ``full_axes``, 0 on ``fixed_axes``, the map index elsewhere."""
    parts = []
    for k, d in enumerate(shape):
        parts.append(f"0:{d}" if k in full_axes else ("0" if k in fixed_axes else f"i{k}"))
    return ", ".join(parts) or "0"


# ONNX op -> sdflow_kernels::ReduceOp (codegen/kernels/reduce.h).
_REDUCERS = {"ReduceSum": "sum", "ReduceMean": "mean", "ReduceMax": "max", "ReduceMin": "min", "ReduceProd": "prod",
             "ReduceL1": "l1", "ReduceL2": "l2", "ReduceSumSquare": "sum_square", "ReduceLogSum": "log_sum",
             "ReduceLogSumExp": "log_sum_exp"}
REDUCE_INCLUDE = '#include "reduce.h"\n'


def _accumulator(ctype: str) -> str:
    """The C++ type kernels compute in: float for float16 and bfloat16 (rounded once when stored, as numpy does)."""
    return "float" if ctype in ("dace::float16", "dace::bfloat16") else ctype


@expansion(*_REDUCERS)
def reduce(ctx: Ctx):
    """A map over the kept indices, each one call of ``sdflow_kernels::reduce`` over its block."""
    x_conn, y_conn = ctx.connector("in", 0), ctx.connector("out", 0)
    shape = ctx.shape(x_conn)
    axes = reduce_axes(ctx.node, len(shape), ctx.static(1))
    dtype = _accumulator(ctx.desc(x_conn).dtype.ctype)
    strides = contiguous_strides(shape)
    op = _REDUCERS[ctx.node.op_type]
    body = (int_array("sizes_", [shape[a] for a in axes]) + int_array("strides_", [strides[a] for a in axes])
            + f"y = sdflow_kernels::reduce<sdflow_kernels::ReduceOp::{op}, {dtype}>(x, {len(axes)}, sizes_, strides_);")
    keep = ctx.node.attr("keepdims", 1)
    out_index = ", ".join("0" if k in axes else f"i{k}" for k in range(len(shape)) if keep or k not in axes) or "0"
    sdfg, state = ctx.nested()
    add_map(state, ctx.node.op_type.lower(), index_ranges(shape, skip=axes), {"x": f"{x_conn}[{_subset(shape, axes)}]"},
            body, {"y": f"{y_conn}[{out_index}]"}, pointers=["x"], includes=REDUCE_INCLUDE)
    return sdfg


@expansion("ArgMax", "ArgMin")
def arg_reduce(ctx: Ctx):
    """A map over the kept indices, each one call of ``sdflow_kernels::arg_reduce``."""
    x_conn, y_conn = ctx.connector("in", 0), ctx.connector("out", 0)
    shape = ctx.shape(x_conn)
    axis = normalize_axis(ctx.node.attr("axis", 0), len(shape))
    largest = "true" if ctx.node.op_type == "ArgMax" else "false"
    last = "true" if ctx.node.attr("select_last_index", 0) else "false"
    code = (f"y = sdflow_kernels::arg_reduce(x, (int64_t)({cexpr(shape[axis])}), "
            f"(int64_t)({cexpr(contiguous_strides(shape)[axis])}), {largest}, {last});")
    keep = ctx.node.attr("keepdims", 1)
    out_index = ", ".join("0" if k == axis else f"i{k}" for k in range(len(shape)) if keep or k != axis) or "0"
    sdfg, state = ctx.nested()
    add_map(state, ctx.node.op_type.lower(), index_ranges(shape, skip=[axis]),
            {"x": f"{x_conn}[{_subset(shape, [axis])}]"}, code, {"y": f"{y_conn}[{out_index}]"}, pointers=["x"],
            includes=REDUCE_INCLUDE)
    return sdfg


def _rows_along_axis(ctx: Ctx, row_code) -> object:
    """One tasklet per row along the node's ``axis`` (default -1), reading ``x`` and writing ``y`` through
    pointers to the row; ``row_code(n, stride, dtype)`` gives its C++ (n elements ``stride`` apart)."""
    x_conn, y_conn = ctx.connector("in", 0), ctx.connector("out", 0)
    shape = ctx.shape(x_conn)
    axis = normalize_axis(ctx.node.attr("axis", -1), len(shape))
    code = row_code(cexpr(shape[axis]), cexpr(contiguous_strides(shape)[axis]),
                    _accumulator(ctx.desc(x_conn).dtype.ctype))
    subset = _subset(shape, [axis])
    sdfg, state = ctx.nested()
    add_map(state, ctx.node.op_type.lower(), index_ranges(shape, skip=[axis]), {"x": f"{x_conn}[{subset}]"}, code,
            {"y": f"{y_conn}[{subset}]"}, pointers=["x", "y"], includes=REDUCE_INCLUDE)
    return sdfg


def softmax_row_code(op_type: str, n, stride, dtype: str, narrow: bool = False) -> str:
    """C++ for one row of Softmax/LogSoftmax (``sdflow_kernels::softmax_row``): reads ``x[k * stride]``, writes
    ``y[k * stride]`` (``x`` may be ``y``); ``narrow``: float16, rounded as ONNX's reference rounds."""
    if narrow and op_type == "Softmax":
        return f"sdflow_kernels::softmax_row_half(x, y, (int64_t)({n}), (int64_t)({stride}));"
    log = "true" if op_type == "LogSoftmax" else "false"
    return f"sdflow_kernels::softmax_row<{dtype}>(x, y, (int64_t)({n}), (int64_t)({stride}), {log});"


@expansion("Softmax", "LogSoftmax")
def softmax(ctx: Ctx):
    narrow = ctx.desc(ctx.connector("in", 0)).dtype.ctype == "dace::float16"
    return _rows_along_axis(ctx, lambda n, stride, dtype: softmax_row_code(ctx.node.op_type, n, stride, dtype,
                                                                           narrow))


@expansion("Hardmax")
def hardmax(ctx: Ctx):
    return _rows_along_axis(ctx, lambda n, stride, dtype:
                            f"sdflow_kernels::hardmax_row(x, y, (int64_t)({n}), (int64_t)({stride}));")


def layer_norm_row_code(node, n, scale: tuple[str, int] | None, bias: tuple[str, int] | None,
                        statistics: str = "stats_") -> str:
    """C++ for one row of LayerNormalization/RMSNormalization (``sdflow_kernels::layer_norm_row``): reads ``x``,
    writes ``y`` (``x`` may be ``y``); ``scale``/``bias``: (pointer, step: 1 per element, 0 one value) or None.
    Leaves the row's mean and inverse standard deviation in ``statistics``."""
    def pointer(term):
        return (term[0], term[1]) if term else ("static_cast<const float*>(nullptr)", 0)
    (scale_ptr, scale_step), (bias_ptr, bias_step) = pointer(scale), pointer(bias)
    rms = "true" if node.op_type == "RMSNormalization" else "false"
    return (f"const sdflow_kernels::NormStatistics {statistics} = sdflow_kernels::layer_norm_row(x, y, (int64_t)({n}), "
            f"{scale_ptr}, {scale_step}, {bias_ptr}, {bias_step}, {float(node.attr('epsilon', 1e-5))!r}f, {rms});\n"
            f"(void){statistics};\n")


@expansion("LayerNormalization", "RMSNormalization")
def layer_normalization(ctx: Ctx):
    x_conn = ctx.connector("in", 0)
    shape = ctx.shape(x_conn)
    axis = normalize_axis(ctx.node.attr("axis", -1), len(shape))
    normalized = list(range(axis, len(shape)))
    count = product(shape[axis:])
    inputs = {"x": f"{x_conn}[{_subset(shape, normalized)}]"}
    terms = {}
    for position, name in ((1, "scale"), (2, "bias")):
        connector = ctx.connector("in", position)
        if connector is None:
            continue
        size = product(ctx.shape(connector))
        inputs[name] = f"{connector}[{', '.join(f'0:{d}' for d in ctx.shape(connector)) or '0'}]"
        terms[name] = (name, 1 if size == count else 0)
    outputs = {"y": f"{ctx.connector('out', 0)}[{_subset(shape, normalized)}]"}
    stats = ""
    for position, name, value in ((1, "mean_out", "stats_.mean"), (2, "inv_std_out", "stats_.inv_std")):
        connector = ctx.connector("out", position)
        if connector is not None:
            outputs[name] = f"{connector}[{_subset(shape, [], fixed_axes=normalized)}]"
            stats += f"{name} = {value};"
    code = layer_norm_row_code(ctx.node, cexpr(count), terms.get("scale"), terms.get("bias")) + stats
    sdfg, state = ctx.nested()
    add_map(state, "layernorm", index_ranges(shape[:axis]), inputs, code, outputs,
            pointers=["x", "y", *terms], includes=REDUCE_INCLUDE)
    return sdfg


@expansion("GlobalAveragePool", "GlobalMaxPool", "GlobalLpPool")
def global_pool(ctx: Ctx):
    x_conn, y_conn = ctx.connector("in", 0), ctx.connector("out", 0)
    shape = ctx.shape(x_conn)
    spatial = list(range(2, len(shape)))
    kind = {"GlobalAveragePool": 0, "GlobalMaxPool": 1, "GlobalLpPool": 2}[ctx.node.op_type]
    p = float(ctx.node.attr("p", 2)) if kind == 2 else 2.0
    code = f"y = sdflow_kernels::global_pool(x, (int64_t)({cexpr(product(shape[2:]))}), {kind}, {p!r});"
    sdfg, state = ctx.nested()
    add_map(state, "global_average_pool", index_ranges(shape[:2]), {"x": f"{x_conn}[{_subset(shape, spatial)}]"},
            code, {"y": f"{y_conn}[{_subset(shape, [], fixed_axes=spatial)}]"}, pointers=["x"],
            includes=REDUCE_INCLUDE)
    return sdfg


@expansion("InstanceNormalization", "GroupNormalization")
def instance_group_norm(ctx: Ctx):
    """A map over (sample, group), each one call of ``sdflow_kernels::group_norm`` over its contiguous channels x
    spatial block (InstanceNormalization: a group per channel)."""
    x_conn, y_conn = ctx.connector("in", 0), ctx.connector("out", 0)
    shape = ctx.shape(x_conn)
    channels = shape[1]
    groups = ctx.node.attr("num_groups") if ctx.node.op_type == "GroupNormalization" else channels
    code = (f"sdflow_kernels::group_norm(x, scale, bias, y, i0, i1, (int64_t)({cexpr(channels)}), "
            f"(int64_t)({cexpr(groups)}), (int64_t)({cexpr(product(shape[2:]))}), "
            f"{float(ctx.node.attr('epsilon', 1e-5))!r});")
    whole = ", ".join(f"0:{d}" for d in shape)
    scale, bias = ctx.connector("in", 1), ctx.connector("in", 2)
    sdfg, state = ctx.nested()
    add_map(state, ctx.node.op_type.lower(), {"i0": shape[0], "i1": groups},
            {"x": f"{x_conn}[{whole}]", "scale": f"{scale}[0:{channels}]", "bias": f"{bias}[0:{channels}]"},
            code, {"y": f"{y_conn}[{whole}]"}, pointers=["x", "y", "scale", "bias"], includes=REDUCE_INCLUDE)
    return sdfg


@expansion("LpNormalization")
def lp_normalization(ctx: Ctx):
    l1 = "true" if ctx.node.attr("p", 2) == 1 else "false"
    return _rows_along_axis(ctx, lambda n, stride, dtype:
                            f"sdflow_kernels::lp_normalize_row(x, y, (int64_t)({n}), (int64_t)({stride}), {l1});")


@expansion("MeanVarianceNormalization")
def mean_variance_normalization(ctx: Ctx):
    """One call of ``sdflow_kernels::mean_variance_normalization`` over the whole tensor."""
    x_conn, y_conn = ctx.connector("in", 0), ctx.connector("out", 0)
    shape = ctx.shape(x_conn)
    axes = {normalize_axis(a, len(shape)) for a in ctx.node.attr("axes") or [0, 2, 3]}
    kept = ", ".join("false" if k in axes else "true" for k in range(len(shape)))
    return ctx.tasklet(int_array("shape_", shape) + f"const bool kept_[] = {{{kept}}};\n"
                       f"sdflow_kernels::mean_variance_normalization({ctx.ptr(x_conn)}, {ctx.ptr(y_conn)}, "
                       f"{len(shape)}, shape_, kept_);\n", includes=REDUCE_INCLUDE)
