"""Data movement: reshapes (one memcpy), Transpose/Slice/Concat/Split/Gather (parallel maps with affine
indices), Shape and ConstantOfShape (writes of compile-time values)."""
from __future__ import annotations

from sdflow.ir.nodes import decode_tensor_attribute
from sdflow.ir.ops._base import normalize_axis
from sdflow.ir.ops.movement import Range as RangeOp, Shape as ShapeOp, Transpose as TransposeOp, slice_params
from ._expansion import Ctx, add_map, cexpr, contiguous_strides, expansion, index_ranges, product


def _all(shape) -> str:
    return ", ".join(f"i{k}" for k in range(len(shape))) or "0"


@expansion("Reshape", "Flatten", "Squeeze", "Unsqueeze")
def reshape(ctx: Ctx):
    source, target = ctx.connector("in", 0), ctx.connector("out", 0)
    desc = ctx.desc(source)
    size = cexpr(product(desc.shape))
    return ctx.tasklet(f"std::memcpy({ctx.ptr(target)}, {ctx.ptr(source)}, sizeof({desc.dtype.ctype}) * {size});")


@expansion("Transpose")
def transpose(ctx: Ctx):
    source, target = ctx.connector("in", 0), ctx.connector("out", 0)
    out_shape = ctx.shape(target)
    perm = TransposeOp.perm(ctx.node, len(out_shape))
    in_index = [""] * len(perm)
    for k, axis in enumerate(perm):
        in_index[axis] = f"i{k}"
    sdfg, state = ctx.nested()
    add_map(state, "transpose", index_ranges(out_shape), {"x": f"{source}[{', '.join(in_index) or '0'}]"},
            "y = x;", {"y": f"{target}[{_all(out_shape)}]"})
    return sdfg


def _in_bounds(index: str, size) -> str:
    """C++ for a gather index: negative values count from the end (ONNX), then clamped into [0, size), so
    computed indices never read out of bounds (graph inputs used as indices are checked in Python)."""
    n = cexpr(size)
    return f"std::min<int64_t>(std::max<int64_t>({index} < 0 ? {index} + {n} : {index}, 0), {n} - 1)"


def _shifted(shape, axis, offset) -> str:
    return ", ".join(f"i{k} + {offset}" if k == axis else f"i{k}" for k in range(len(shape))) or "0"


@expansion("Concat")
def concat(ctx: Ctx):
    target = ctx.connector("out", 0)
    axis = normalize_axis(ctx.node.attr("axis"), len(ctx.shape(target)))
    sdfg, state = ctx.nested()
    offset = 0
    for position in range(len(ctx.node.onnx_inputs)):
        source = ctx.connector("in", position)
        if source is None:
            continue
        shape = ctx.shape(source)
        add_map(state, f"concat_{position}", index_ranges(shape), {"x": f"{source}[{_all(shape)}]"}, "y = x;",
                {"y": f"{target}[{_shifted(shape, axis, offset)}]"})
        offset = offset + shape[axis]
    return sdfg


@expansion("Split")
def split(ctx: Ctx):
    source = ctx.connector("in", 0)
    axis = normalize_axis(ctx.node.attr("axis", 0), len(ctx.shape(source)))
    sdfg, state = ctx.nested()
    offset = 0
    for position in range(len(ctx.node.onnx_outputs)):
        target = ctx.connector("out", position)
        shape = ctx.shape(target) if target else None
        if target is not None:
            add_map(state, f"split_{position}", index_ranges(shape), {"x": f"{source}[{_shifted(shape, axis, offset)}]"},
                    "y = x;", {"y": f"{target}[{_all(shape)}]"})
        offset = offset + (shape[axis] if shape else 0)
    return sdfg


@expansion("Slice")
def slice_(ctx: Ctx):
    source, target = ctx.connector("in", 0), ctx.connector("out", 0)
    in_shape, out_shape = ctx.shape(source), ctx.shape(target)
    axes, steps = ctx.static(3), ctx.static(4)
    params = slice_params(in_shape, ctx.static(1).tolist(), ctx.static(2).tolist(),
                          None if axes is None else axes.tolist(), None if steps is None else steps.tolist())
    if any(d == 0 for d in out_shape):
        return ctx.tasklet(";")  # an empty slice (e.g. a start past the end) writes nothing
    sdfg, state = ctx.nested()
    if any(step < 0 for _, step, _ in params):
        # DaCe's memlet propagation assumes increasing indices; read through a pointer to the whole input.
        strides = contiguous_strides(in_shape)
        offset = " + ".join(f"({cexpr(first)} + ({step}) * i{k}) * {cexpr(strides[k])}"
                            for k, (first, step, _) in enumerate(params)) or "0"
        add_map(state, "slice", index_ranges(out_shape), {"x": f"{source}[{', '.join(f'0:{d}' for d in in_shape)}]"},
                f"y = x[{offset}];", {"y": f"{target}[{_all(out_shape)}]"}, pointers=["x"])
        return sdfg
    in_index = ", ".join(f"{first} + {step} * i{k}" for k, (first, step, _) in enumerate(params)) or "0"
    add_map(state, "slice", index_ranges(out_shape), {"x": f"{source}[{in_index}]"}, "y = x;",
            {"y": f"{target}[{_all(out_shape)}]"})
    return sdfg


@expansion("Gather")
def gather(ctx: Ctx):
    data, indices, target = ctx.connector("in", 0), ctx.connector("in", 1), ctx.connector("out", 0)
    data_shape = ctx.shape(data)
    # From the output's rank: rank-0 indices arrive here as shape [1] (see lowering._scalars_as_vectors).
    index_rank = len(ctx.shape(target)) - len(data_shape) + 1
    axis = normalize_axis(ctx.node.attr("axis", 0), len(data_shape))
    data_index = [f"i{k}" for k in range(axis)] + [f"0:{data_shape[axis]}"] + [
        f"i{k + index_rank - 1}" for k in range(axis + 1, len(data_shape))]
    index_index = ", ".join(f"i{axis + k}" for k in range(index_rank)) or "0"
    code = f"y = x[{_in_bounds('index', data_shape[axis])} * {cexpr(contiguous_strides(data_shape)[axis])}];"
    out_shape = ctx.shape(target)
    sdfg, state = ctx.nested()
    add_map(state, "gather", index_ranges(out_shape), {"x": f"{data}[{', '.join(data_index)}]",
                                                       "index": f"{indices}[{index_index}]"}, code,
            {"y": f"{target}[{_all(out_shape)}]"}, pointers=["x"])
    return sdfg


@expansion("Shape")
def shape(ctx: Ctx):
    source, target = ctx.connector("in", 0), ctx.connector("out", 0)
    dims = ctx.shape(source)
    start, end = ShapeOp.bounds(ctx.node, len(dims))
    code = " ".join(f"{ctx.ptr(target)}[{k}] = {cexpr(d)};" for k, d in enumerate(dims[start:end]))
    return ctx.tasklet(code or ";")


@expansion("Size")
def size(ctx: Ctx):
    source, target = ctx.connector("in", 0), ctx.connector("out", 0)
    return ctx.tasklet(f"{ctx.ptr(target)}[0] = {cexpr(product(ctx.shape(source)))};")


@expansion("ConstantOfShape")
def constant_of_shape(ctx: Ctx):
    target = ctx.connector("out", 0)
    out_shape = ctx.shape(target)
    value = ctx.node.attr("value")
    fill = decode_tensor_attribute(value).ravel()[0].item() if value is not None else 0.0
    sdfg, state = ctx.nested()
    literal = repr(float(fill)) if isinstance(fill, float) else str(int(fill))
    add_map(state, "fill", index_ranges(out_shape), {}, f"y = ({ctx.desc(target).dtype.ctype}){literal};",
            {"y": f"{target}[{_all(out_shape)}]"})
    return sdfg


@expansion("GatherElements")
def gather_elements(ctx: Ctx):
    data, indices, target = ctx.connector("in", 0), ctx.connector("in", 1), ctx.connector("out", 0)
    data_shape, out_shape = ctx.shape(data), ctx.shape(target)
    axis = normalize_axis(ctx.node.attr("axis", 0), len(data_shape))
    data_index = ", ".join(f"0:{d}" if k == axis else f"i{k}" for k, d in enumerate(data_shape))
    code = f"y = x[{_in_bounds('index', data_shape[axis])} * {cexpr(contiguous_strides(data_shape)[axis])}];"
    sdfg, state = ctx.nested()
    add_map(state, "gather_elements", index_ranges(out_shape), {"x": f"{data}[{data_index}]",
                                                                "index": f"{indices}[{_all(out_shape)}]"},
            code, {"y": f"{target}[{_all(out_shape)}]"}, pointers=["x"])
    return sdfg


@expansion("GatherND")
def gather_nd(ctx: Ctx):
    data, indices, target = ctx.connector("in", 0), ctx.connector("in", 1), ctx.connector("out", 0)
    data_shape, index_shape, out_shape = ctx.shape(data), ctx.shape(indices), ctx.shape(target)
    shared = ctx.node.attr("batch_dims", 0)  # leading axes data and indices share (output axes 0..shared-1)
    depth, batch = index_shape[-1], len(index_shape) - 1
    strides = contiguous_strides(data_shape)
    data_index = [f"i{k}" for k in range(shared)] + [f"0:{d}" for d in data_shape[shared:shared + depth]] + \
        [f"i{batch + k}" for k in range(len(data_shape) - shared - depth)]
    index_index = [f"i{k}" for k in range(batch)] + [f"0:{depth}"]
    offset = " + ".join(f"{_in_bounds(f'index[{k}]', data_shape[shared + k])} * {cexpr(strides[shared + k])}"
                        for k in range(depth)) or "0"
    sdfg, state = ctx.nested()
    add_map(state, "gather_nd", index_ranges(out_shape), {"x": f"{data}[{', '.join(data_index)}]",
                                                          "index": f"{indices}[{', '.join(index_index)}]"},
            f"y = x[{offset}];", {"y": f"{target}[{_all(out_shape)}]"}, pointers=["x", "index"])
    return sdfg


@expansion("Range")
def range_(ctx: Ctx):
    target = ctx.connector("out", 0)
    start, _, delta = RangeOp.bounds([ctx.static(p) for p in range(3)])
    literal = repr if isinstance(start, float) else cexpr
    ctype = ctx.desc(target).dtype.ctype
    sdfg, state = ctx.nested()
    add_map(state, "range", index_ranges(ctx.shape(target)), {},
            f"y = ({ctype})({literal(start)} + i0 * {literal(delta)});", {"y": f"{target}[i0]"})
    return sdfg


@expansion("CumSum", "CumProd")
def cumsum(ctx: Ctx):
    source, target = ctx.connector("in", 0), ctx.connector("out", 0)
    shape = ctx.shape(source)
    axis = normalize_axis(int(ctx.static(1)[0]), len(shape))
    n, stride = cexpr(shape[axis]), cexpr(contiguous_strides(shape)[axis])
    exclusive, reverse = bool(ctx.node.attr("exclusive", 0)), bool(ctx.node.attr("reverse", 0))
    flags = ", ".join("true" if f else "false" for f in (ctx.node.op_type == "CumProd", exclusive, reverse))
    code = f"sdflow_kernels::cumulative_row(x, y, (int64_t)({n}), (int64_t)({stride}), {flags});"
    subset = ", ".join(f"0:{d}" if k == axis else f"i{k}" for k, d in enumerate(shape)) or "0"
    sdfg, state = ctx.nested()
    add_map(state, ctx.node.op_type.lower(), index_ranges(shape, skip=[axis]), {"x": f"{source}[{subset}]"}, code,
            {"y": f"{target}[{subset}]"}, pointers=["x", "y"], includes='#include "reduce.h"\n')
    return sdfg


@expansion("ReverseSequence")
def reverse_sequence(ctx: Ctx):
    """y[t, b, ...] = x[len[b] - 1 - t, b, ...] for t < len[b], else x[t, b, ...] (time and batch swapped by the
    attributes). Lengths of graph inputs outside 0..steps are refused at call time (runtime._length_bounds); others
    are clamped here, to stay in bounds."""
    source, lengths, target = ctx.connector("in", 0), ctx.connector("in", 1), ctx.connector("out", 0)
    shape = ctx.shape(source)
    time_axis, batch_axis = ctx.node.attr("time_axis", 0), ctx.node.attr("batch_axis", 1)
    strides = contiguous_strides(shape)
    t, b = f"i{time_axis}", f"i{batch_axis}"
    offset = " + ".join(f"{'t_' if k == time_axis else f'i{k}'} * {cexpr(s)}" for k, s in enumerate(strides))
    code = (f"int64_t n_ = (int64_t)lens[{b}]; n_ = n_ < 0 ? 0 : (n_ > {cexpr(shape[time_axis])} ? "
            f"{cexpr(shape[time_axis])} : n_); const int64_t t_ = {t} < n_ ? n_ - 1 - {t} : {t}; y = x[{offset}];")
    sdfg, state = ctx.nested()
    out_index = ", ".join(f"i{k}" for k in range(len(shape)))
    add_map(state, "reverse_sequence", index_ranges(shape),
            {"x": f"{source}[{', '.join(f'0:{d}' for d in shape)}]", "lens": f"{lengths}[0:{shape[batch_axis]}]"},
            code, {"y": f"{target}[{out_index}]"}, pointers=["x", "lens"])
    return sdfg


@expansion("BitCast")
def bit_cast(ctx: Ctx):
    """Each element's bytes copied into an element of the other type (storage-only types are their bytes)."""
    source, target = ctx.connector("in", 0), ctx.connector("out", 0)
    shape = ctx.shape(source)
    index = ", ".join(f"i{k}" for k in range(len(shape))) or "0"
    sdfg, state = ctx.nested()
    add_map(state, "bit_cast", index_ranges(shape), {"x": f"{source}[{index}]"},
            "std::memcpy(&y, &x, sizeof(y));", {"y": f"{target}[{index}]"}, includes="#include <cstring>")
    return sdfg
