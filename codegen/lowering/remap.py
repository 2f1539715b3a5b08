"""Index-remapping ops as one parallel map over the output whose tasklet reads the input through a pointer at a
computed offset: Tile, Pad, Trilu, DepthToSpace, SpaceToDepth, OneHot, CenterCropPad, Compress; EyeLike writes
without reading; Dropout (inference) copies; Scatter* loop over the indices; TopK sorts per row."""
from __future__ import annotations

from sdflow.ir.types import to_dim
from sdflow.ir.ops._base import normalize_axis
from sdflow.ir.ops.remap import OneHot as OneHotOp, center_crop_pad_offsets, compress_indices, pad_amounts
from ._expansion import Ctx, add_map, cexpr, contiguous_strides, expansion, index_ranges, int_array, product


def _whole(shape) -> str:
    return ", ".join(f"0:{d}" for d in shape) or "0"


def _each(shape) -> str:
    return ", ".join(f"i{k}" for k in range(len(shape))) or "0"


def _offset(indices, shape) -> str:
    """C++ linear offset of per-axis index expressions into a C-contiguous array of ``shape``."""
    strides = contiguous_strides(shape)
    return " + ".join(f"({index}) * {cexpr(stride)}" for index, stride in zip(indices, strides)) or "0"


def _remap(ctx: Ctx, code: str, extra_inputs: dict | None = None, source_position: int = 0):
    """A map over the output; ``code`` assigns ``y`` and reads the input as pointer ``x`` (and ``extra_inputs``
    {name: ONNX input position}, also pointers to whole arrays)."""
    target = ctx.connector("out", 0)
    out_shape = ctx.shape(target)
    if any(d == 0 for d in out_shape):
        return ctx.tasklet(";")
    inputs, pointers = {}, []
    for name, position in {"x": source_position, **(extra_inputs or {})}.items():
        connector = ctx.connector("in", position)
        if connector is not None:
            inputs[name] = f"{connector}[{_whole(ctx.shape(connector))}]"
            pointers.append(name)
    sdfg, state = ctx.nested()
    add_map(state, ctx.node.op_type.lower(), index_ranges(out_shape), inputs, code,
            {"y": f"{target}[{_each(out_shape)}]"}, pointers=pointers)
    return sdfg


@expansion("Tile")
def tile(ctx: Ctx):
    in_shape = ctx.shape(ctx.connector("in", 0))
    return _remap(ctx, f"y = x[{_offset([f'i{k} % {cexpr(d)}' for k, d in enumerate(in_shape)], in_shape)}];")


@expansion("Pad")
def pad(ctx: Ctx):
    in_shape = ctx.shape(ctx.connector("in", 0))
    begin, end = pad_amounts(ctx.node, len(in_shape), ctx.static(1), ctx.static(3))
    mode = ctx.node.attr("mode", "constant")
    lines, inside = [], []
    for k, (d, b, e) in enumerate(zip(in_shape, begin, end)):
        # Negative pads crop: the padded axis is the input's [low, low + length).
        low, length = max(0, -b), f"({cexpr(d)} - {max(0, -b)} - {max(0, -e)})"
        lines.append(f"int64_t s{k}_ = (int64_t)i{k} - {max(0, b)}; const int64_t n{k}_ = {length};")
        if mode == "edge":
            lines.append(f"s{k}_ = s{k}_ < 0 ? 0 : (s{k}_ >= n{k}_ ? n{k}_ - 1 : s{k}_);")
        elif mode == "wrap":
            lines.append(f"s{k}_ = ((s{k}_ % n{k}_) + n{k}_) % n{k}_;")
        elif mode == "reflect":
            lines.append(f"if (n{k}_ == 1) s{k}_ = 0; else {{ const int64_t p_ = 2 * (n{k}_ - 1); "
                         f"s{k}_ = (s{k}_ < 0 ? -s{k}_ : s{k}_) % p_; if (s{k}_ >= n{k}_) s{k}_ = p_ - s{k}_; }}")
        else:
            inside.append(f"s{k}_ >= 0 && s{k}_ < n{k}_")
        lines.append(f"s{k}_ += {low};")
    read = f"x[{_offset([f's{k}_' for k in range(len(in_shape))], in_shape)}]"
    if mode == "constant":
        value = "c[0]" if ctx.connector("in", 2) else "0"
        read = f"({' && '.join(inside) or 'true'}) ? {read} : ({ctx.desc(ctx.connector('out', 0)).dtype.ctype}){value}"
    return _remap(ctx, "\n".join(lines) + f"\ny = {read};", {"c": 2})


@expansion("Trilu")
def trilu(ctx: Ctx):
    shape = ctx.shape(ctx.connector("in", 0))
    k = ctx.static(1)
    offset = 0 if k is None else int(k.ravel()[0])
    row, column = f"(int64_t)i{len(shape) - 2}", f"(int64_t)i{len(shape) - 1}"
    keep = f"{column} - {row} >= {offset}" if ctx.node.attr("upper", 1) else f"{column} - {row} <= {offset}"
    return _remap(ctx, f"y = ({keep}) ? x[{_offset([f'i{k}' for k in range(len(shape))], shape)}] : "
                       f"({ctx.desc(ctx.connector('out', 0)).dtype.ctype})0;")


@expansion("DepthToSpace", "SpaceToDepth")
def depth_space(ctx: Ctx):
    in_shape = ctx.shape(ctx.connector("in", 0))
    out_shape = ctx.shape(ctx.connector("out", 0))
    b = ctx.node.attr("blocksize")
    if ctx.node.op_type == "DepthToSpace":
        channels = cexpr(out_shape[1])
        block = f"(i2 % {b}) * {b} + (i3 % {b})"
        channel = (f"({block}) * {channels} + i1" if ctx.node.attr("mode", "DCR") == "DCR"
                   else f"i1 * {b * b} + {block}")
        indices = ["i0", channel, f"i2 / {b}", f"i3 / {b}"]
    else:
        channels = cexpr(in_shape[1])
        if ctx.node.attr("mode", "DCR") == "DCR":  # output channel = (row in block * b + column) * C + c
            channel, block = f"i1 % {channels}", f"(i1 / {channels})"
        else:  # CRD: output channel = c * b * b + row in block * b + column
            channel, block = f"i1 / {b * b}", f"(i1 % {b * b})"
        indices = ["i0", channel, f"i2 * {b} + {block} / {b}", f"i3 * {b} + {block} % {b}"]
    return _remap(ctx, f"y = x[{_offset(indices, in_shape)}];")


@expansion("EyeLike")
def eye_like(ctx: Ctx):
    target = ctx.connector("out", 0)
    sdfg, state = ctx.nested()
    ctype = ctx.desc(target).dtype.ctype
    add_map(state, "eye", index_ranges(ctx.shape(target)), {},
            f"y = ((int64_t)i1 - (int64_t)i0 == {ctx.node.attr('k', 0)}) ? ({ctype})1 : ({ctype})0;",
            {"y": f"{target}[i0, i1]"})
    return sdfg


@expansion("OneHot")
def one_hot(ctx: Ctx):
    indices_shape = ctx.shape(ctx.connector("in", 0))
    axis = normalize_axis(ctx.node.attr("axis", -1), len(indices_shape) + 1)
    depth = OneHotOp.depth(ctx.static(1))
    position = [f"i{k}" for k in range(len(indices_shape) + 1) if k != axis]
    code = (f"int64_t h_ = (int64_t)x[{_offset(position, indices_shape)}]; if (h_ < 0) h_ += {depth};\n"
            f"y = (h_ == (int64_t)i{axis}) ? v[1] : v[0];")
    return _remap(ctx, code, {"v": 2})


@expansion("Dropout")
def dropout(ctx: Ctx):
    source, target, mask = ctx.connector("in", 0), ctx.connector("out", 0), ctx.connector("out", 1)
    desc = ctx.desc(source)
    size = cexpr(product(desc.shape))
    code = f"std::memcpy({ctx.ptr(target)}, {ctx.ptr(source)}, sizeof({desc.dtype.ctype}) * {size});"
    if mask:
        code += f" std::fill({ctx.ptr(mask)}, {ctx.ptr(mask)} + {size}, true);"
    return ctx.tasklet(code)


@expansion("ScatterElements", "ScatterND")
def scatter(ctx: Ctx):
    """One call of ``sdflow_kernels::scatter_elements`` / ``scatter_nd`` (codegen/kernels/remap.h): a copy of the
    data, then the updates in index order (sequential: later duplicates win)."""
    data, indices, updates, out = (ctx.connector("in", 0), ctx.connector("in", 1), ctx.connector("in", 2),
                                   ctx.connector("out", 0))
    shape, index_shape = ctx.shape(data), ctx.shape(indices)
    d, i, u, y = (ctx.ptr(c) for c in (data, indices, updates, out))
    reduction = f"sdflow_kernels::ScatterReduction::{ctx.node.attr('reduction', 'none')}"
    code = int_array("shape_", shape)
    if ctx.node.op_type == "ScatterElements":
        axis = normalize_axis(ctx.node.attr("axis", 0), len(shape))
        code += int_array("index_shape_", index_shape) + (
            f"sdflow_kernels::scatter_elements({d}, {i}, {u}, {y}, {len(shape)}, shape_, index_shape_, {axis}, "
            f"{reduction});\n")
    else:
        code += (f"sdflow_kernels::scatter_nd({d}, {i}, {u}, {y}, {len(shape)}, shape_, {int(index_shape[-1])}, "
                 f"(int64_t)({cexpr(product(index_shape[:-1]))}), {reduction});\n")
    return ctx.tasklet(code, includes='#include "remap.h"\n')


@expansion("TopK")
def top_k(ctx: Ctx):
    x_conn, values_conn, indices_conn = ctx.connector("in", 0), ctx.connector("out", 0), ctx.connector("out", 1)
    shape = ctx.shape(x_conn)
    axis = normalize_axis(ctx.node.attr("axis", -1), len(shape))
    k_dim = to_dim(ctx.static(1).ravel()[0])
    n, stride = cexpr(shape[axis]), cexpr(contiguous_strides(shape)[axis])
    out_stride = cexpr(contiguous_strides([k_dim if a == axis else d for a, d in enumerate(shape)])[axis])
    # (a symbolic k, min(count, 100) after a data-dependent op, is kept within the axis)
    k = f"std::min<int64_t>({cexpr(k_dim)}, {n})"
    largest = "true" if ctx.node.attr("largest", 1) else "false"
    outputs = {name: connector for name, connector in (("values", values_conn), ("indices", indices_conn))
               if connector is not None}  # an unread output may have been removed
    values = "values" if "values" in outputs else f"static_cast<{ctx.desc(x_conn).dtype.ctype}*>(nullptr)"
    indices = "indices" if "indices" in outputs else "static_cast<int64_t*>(nullptr)"
    code = (f"sdflow_kernels::top_k_row(x, (int64_t)({n}), (int64_t)({stride}), (int64_t)({k}), {largest}, {values}, "
            f"{indices}, (int64_t)({out_stride}));")
    x_subset = ", ".join(f"0:{d}" if a == axis else f"i{a}" for a, d in enumerate(shape))
    out_subset = ", ".join(f"0:{k_dim}" if a == axis else f"i{a}" for a in range(len(shape)))
    sdfg, state = ctx.nested()
    add_map(state, "topk", index_ranges(shape, skip=[axis]), {"x": f"{x_conn}[{x_subset}]"}, code,
            {name: f"{connector}[{out_subset}]" for name, connector in outputs.items()},
            pointers=["x", *outputs], includes='#include "remap.h"\n')
    return sdfg


@expansion("CenterCropPad")
def center_crop_pad(ctx: Ctx):
    in_shape = ctx.shape(ctx.connector("in", 0))
    sizes = [int(s) for s in ctx.static(1).ravel()]
    _, offsets = center_crop_pad_offsets(ctx.node, in_shape, sizes)
    sources = [f"((int64_t)i{k} + {o})" for k, o in enumerate(offsets)]
    inside = " && ".join(f"{s} >= 0 && {s} < {cexpr(d)}" for s, d in zip(sources, in_shape)) or "true"
    ctype = ctx.desc(ctx.connector("out", 0)).dtype.ctype
    return _remap(ctx, f"y = ({inside}) ? x[{_offset(sources, in_shape)}] : ({ctype})0;")


@expansion("Compress")
def compress(ctx: Ctx):
    in_shape = ctx.shape(ctx.connector("in", 0))
    picked = compress_indices(ctx.static(1))
    table = "static const int64_t pick_[] = {" + ", ".join(map(str, picked or [0])) + "};"
    axis = ctx.node.attr("axis")
    if axis is None:  # over the flattened input
        return _remap(ctx, f"{table} y = x[pick_[i0]];")
    axis = normalize_axis(axis, len(in_shape))
    sources = [f"pick_[i{k}]" if k == axis else f"i{k}" for k in range(len(in_shape))]
    return _remap(ctx, f"{table} y = x[{_offset(sources, in_shape)}];")
