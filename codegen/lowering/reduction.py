"""Reductions and normalisations: a parallel map over the kept axes, a C++ tasklet that streams each row once."""
from __future__ import annotations

from sdflow.ir.ops.reduction import reduce_axes
from sdflow.ir.ops._base import normalize_axis
from ._math import vectorizable
from ._expansion import Ctx, add_map, cexpr, contiguous_strides, expansion, index_ranges, product


def _subset(shape, full_axes, fixed_axes=()) -> str:
    """Memlet subset: whole range on ``full_axes``, 0 on ``fixed_axes``, the map index elsewhere."""
    parts = []
    for k, d in enumerate(shape):
        parts.append(f"0:{d}" if k in full_axes else ("0" if k in fixed_axes else f"i{k}"))
    return ", ".join(parts) or "0"


# op -> (initial value, accumulation of v_ into acc_, final step); {T} is the accumulator type.
_IDENTITY_MAX = ("(std::numeric_limits<{T}>::has_infinity ? -std::numeric_limits<{T}>::infinity() : "
                 "std::numeric_limits<{T}>::lowest())")
_IDENTITY_MIN = ("(std::numeric_limits<{T}>::has_infinity ? std::numeric_limits<{T}>::infinity() : "
                 "std::numeric_limits<{T}>::max())")
_REDUCERS = {
    "ReduceSum": ("0", "acc_ += v_;", ""),
    "ReduceMean": ("0", "acc_ += v_;", "acc_ = acc_ / ({T})({count});"),
    # A NaN anywhere in the row is the result (as in ONNX Runtime): once acc_ is NaN no comparison replaces it.
    "ReduceMax": (_IDENTITY_MAX, "acc_ = (v_ > acc_ || v_ != v_) ? v_ : acc_;", ""),
    "ReduceMin": (_IDENTITY_MIN, "acc_ = (v_ < acc_ || v_ != v_) ? v_ : acc_;", ""),
    "ReduceProd": ("1", "acc_ *= v_;", ""),
    "ReduceL1": ("0", "acc_ += (v_ < 0 ? -v_ : v_);", ""),
    "ReduceL2": ("0", "acc_ += v_ * v_;", "acc_ = ({T})std::sqrt(acc_);"),
    "ReduceSumSquare": ("0", "acc_ += v_ * v_;", ""),
    "ReduceLogSum": ("0", "acc_ += v_;", "acc_ = ({T})std::log(acc_);"),
}


def _accumulator(ctype: str) -> str:
    """The C++ type kernels compute in: float for float16 and bfloat16 (rounded once when stored, as numpy does)."""
    return "float" if ctype in ("dace::float16", "dace::bfloat16") else ctype


@expansion(*_REDUCERS, "ReduceLogSumExp")
def reduce(ctx: Ctx):
    x_conn, y_conn = ctx.connector("in", 0), ctx.connector("out", 0)
    shape = ctx.shape(x_conn)
    axes = reduce_axes(ctx.node, len(shape), ctx.static(1))
    dtype = _accumulator(ctx.desc(x_conn).dtype.ctype)
    strides = contiguous_strides(shape)
    loops, offset = "", []
    for depth, axis in enumerate(axes):
        loops += f"for (int64_t r{depth}_ = 0; r{depth}_ < {cexpr(shape[axis])}; ++r{depth}_) "
        offset.append(f"r{depth}_ * {cexpr(strides[axis])}")
    element = f"x[{' + '.join(offset) or '0'}]"
    op_type = ctx.node.op_type
    if op_type == "ReduceLogSumExp":
        # Shifted by the maximum, so exp does not overflow; an empty axis gives -inf.
        body = (f"{dtype} m_ = {_IDENTITY_MAX}; {loops}{{ m_ = std::max(m_, {element}); }} "
                f"{dtype} acc_ = 0; {loops}{{ acc_ += std::exp({element} - m_); }} "
                f"acc_ = std::isinf(m_) ? m_ : ({dtype})(std::log(acc_) + m_);")
    else:
        initial, accumulate, final = _REDUCERS[op_type]
        body = (f"{dtype} acc_ = {initial}; {loops}{{ const {dtype} v_ = {element}; {accumulate} }} "
                + final.replace("{count}", cexpr(product(shape[a] for a in axes))))
    keep = ctx.node.attr("keepdims", 1)
    out_index = ", ".join("0" if k in axes else f"i{k}" for k in range(len(shape)) if keep or k not in axes) or "0"
    sdfg, state = ctx.nested()
    add_map(state, op_type.lower(), index_ranges(shape, skip=axes), {"x": f"{x_conn}[{_subset(shape, axes)}]"},
            body.replace("{T}", dtype) + " y = acc_;", {"y": f"{y_conn}[{out_index}]"}, pointers=["x"])
    return sdfg


@expansion("ArgMax", "ArgMin")
def arg_reduce(ctx: Ctx):
    x_conn, y_conn = ctx.connector("in", 0), ctx.connector("out", 0)
    shape = ctx.shape(x_conn)
    axis = normalize_axis(ctx.node.attr("axis", 0), len(shape))
    better = ">" if ctx.node.op_type == "ArgMax" else "<"
    if ctx.node.attr("select_last_index", 0):
        better += "="
    dtype = ctx.desc(x_conn).dtype.ctype
    stride = cexpr(contiguous_strides(shape)[axis])
    code = f"""
int64_t best_ = 0;
{dtype} value_ = x[0];
for (int64_t k_ = 1; k_ < {cexpr(shape[axis])}; ++k_) {{
    const {dtype} v_ = x[k_ * {stride}];
    if (v_ {better} value_) {{ value_ = v_; best_ = k_; }}
}}
y = best_;
"""
    keep = ctx.node.attr("keepdims", 1)
    out_index = ", ".join("0" if k == axis else f"i{k}" for k in range(len(shape)) if keep or k != axis) or "0"
    sdfg, state = ctx.nested()
    add_map(state, ctx.node.op_type.lower(), index_ranges(shape, skip=[axis]),
            {"x": f"{x_conn}[{_subset(shape, [axis])}]"}, code, {"y": f"{y_conn}[{out_index}]"}, pointers=["x"])
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
            {"y": f"{y_conn}[{subset}]"}, pointers=["x", "y"])
    return sdfg


# float16 Softmax rounded where ONNX's reference (numpy float16) rounds: x - max, exp, the sum, the quotient.
_SOFTMAX_FLOAT16 = """
const int64_t n_ = {n}, s_ = {stride};
float m_ = x[0];
for (int64_t k_ = 1; k_ < n_; ++k_) m_ = std::max<float>(m_, x[k_ * s_]);
auto half_ = [](float v_) {{ return (float)(dace::float16)v_; }};
float sum_ = 0;
for (int64_t k_ = 0; k_ < n_; ++k_) sum_ += half_(std::exp(half_((float)x[k_ * s_] - m_)));
sum_ = half_(sum_);
for (int64_t k_ = 0; k_ < n_; ++k_) y[k_ * s_] = half_(std::exp(half_((float)x[k_ * s_] - m_))) / sum_;
"""


def softmax_row_code(op_type: str, n, stride, dtype: str, narrow: bool = False) -> str:
    """C++ for one row of Softmax/LogSoftmax: reads ``x[k_ * s_]``, writes ``y[k_ * s_]`` (``x`` may be ``y``)."""
    if narrow and op_type == "Softmax":
        return _SOFTMAX_FLOAT16.format(n=n, stride=stride)
    code = f"""
const int64_t n_ = {n}, s_ = {stride};
{dtype} m_ = x[0];
for (int64_t k_ = 1; k_ < n_; ++k_) m_ = std::max<{dtype}>(m_, x[k_ * s_]);
{dtype} sum_ = 0;
#pragma omp simd reduction(+:sum_)
for (int64_t k_ = 0; k_ < n_; ++k_) {{ {dtype} e_ = std::exp(({dtype})x[k_ * s_] - m_); sum_ += e_; {"" if narrow else "y[k_ * s_] = e_;"} }}
"""
    code = vectorizable(code, dtype)
    if op_type == "LogSoftmax":
        return code + (f"const {dtype} log_sum_ = std::log(sum_);\n"
                       f"for (int64_t k_ = 0; k_ < n_; ++k_) y[k_ * s_] = ({dtype})x[k_ * s_] - m_ - log_sum_;\n")
    return code + (f"const {dtype} inv_ = ({dtype})1 / sum_;\n"
                   "for (int64_t k_ = 0; k_ < n_; ++k_) y[k_ * s_] *= inv_;\n")


@expansion("Softmax", "LogSoftmax")
def softmax(ctx: Ctx):
    narrow = ctx.desc(ctx.connector("in", 0)).dtype.ctype == "dace::float16"
    return _rows_along_axis(ctx, lambda n, stride, dtype: softmax_row_code(ctx.node.op_type, n, stride, dtype,
                                                                           narrow))


@expansion("Hardmax")
def hardmax(ctx: Ctx):
    return _rows_along_axis(ctx, lambda n, stride, dtype: f"""
int64_t best_ = 0;
for (int64_t k_ = 1; k_ < {n}; ++k_) if (x[k_ * {stride}] > x[best_ * {stride}]) best_ = k_;
for (int64_t k_ = 0; k_ < {n}; ++k_) y[k_ * {stride}] = k_ == best_ ? ({dtype})1 : ({dtype})0;
""")


def layer_norm_row_code(node, n, dtype: str, scale: str | None, bias: str | None) -> str:
    """C++ for one row of LayerNormalization/RMSNormalization: reads ``x[k_]``, writes ``y[k_]`` (``x`` may be
    ``y``), leaves ``mean_`` and ``inv_`` (the inverse standard deviation) defined."""
    scaled = "(x[k_] - mean_) * inv_" + (f" * {scale}" if scale else "") + (f" + {bias}" if bias else "")
    # RMSNormalization: the same without centring (mean_ stays 0) and without bias.
    centre = "" if node.op_type == "RMSNormalization" else \
        "#pragma omp simd reduction(+:mean_)\nfor (int64_t k_ = 0; k_ < n_; ++k_) mean_ += x[k_];\nmean_ /= n_;"
    return f"""
const int64_t n_ = {n};
float mean_ = 0;
{centre}
float var_ = 0;
#pragma omp simd reduction(+:var_)
for (int64_t k_ = 0; k_ < n_; ++k_) {{ float d_ = x[k_] - mean_; var_ += d_ * d_; }}
const float inv_ = 1.0f / std::sqrt(var_ / n_ + {float(node.attr('epsilon', 1e-5))!r}f);
for (int64_t k_ = 0; k_ < n_; ++k_) y[k_] = ({dtype})({scaled});
"""


@expansion("LayerNormalization", "RMSNormalization")
def layer_normalization(ctx: Ctx):
    x_conn = ctx.connector("in", 0)
    shape = ctx.shape(x_conn)
    axis = normalize_axis(ctx.node.attr("axis", -1), len(shape))
    normalized = list(range(axis, len(shape)))
    count = product(shape[axis:])
    dtype = ctx.desc(x_conn).dtype.ctype
    inputs = {"x": f"{x_conn}[{_subset(shape, normalized)}]"}
    terms = {}
    for position, name in ((1, "scale"), (2, "bias")):
        connector = ctx.connector("in", position)
        if connector is None:
            continue
        size = product(ctx.shape(connector))
        inputs[name] = f"{connector}[{', '.join(f'0:{d}' for d in ctx.shape(connector)) or '0'}]"
        terms[name] = f"{name}[k_]" if size == count else f"{name}[0]"
    outputs = {"y": f"{ctx.connector('out', 0)}[{_subset(shape, normalized)}]"}
    stats = ""
    for position, name, value in ((1, "mean_out", "mean_"), (2, "inv_std_out", "inv_")):
        connector = ctx.connector("out", position)
        if connector is not None:
            outputs[name] = f"{connector}[{_subset(shape, [], fixed_axes=normalized)}]"
            stats += f"{name} = {value};"
    code = layer_norm_row_code(ctx.node, cexpr(count), dtype, terms.get("scale"), terms.get("bias")) + stats
    sdfg, state = ctx.nested()
    add_map(state, "layernorm", index_ranges(shape[:axis]), inputs, code, outputs,
            pointers=["x", "y", *terms])
    return sdfg


@expansion("GlobalAveragePool", "GlobalMaxPool", "GlobalLpPool")
def global_pool(ctx: Ctx):
    x_conn, y_conn = ctx.connector("in", 0), ctx.connector("out", 0)
    shape = ctx.shape(x_conn)
    spatial = list(range(2, len(shape)))
    dtype = ctx.desc(x_conn).dtype.ctype
    if ctx.node.op_type == "GlobalLpPool":
        p = float(ctx.node.attr("p", 2))
        code = f"""
const int64_t n_ = {cexpr(product(shape[2:]))};
double sum_ = 0;
for (int64_t k_ = 0; k_ < n_; ++k_) sum_ += std::pow(std::abs((double)x[k_]), {p!r});
y = ({dtype})std::pow(sum_, 1.0 / {p!r});
"""
    elif ctx.node.op_type == "GlobalMaxPool":
        code = f"""
const int64_t n_ = {cexpr(product(shape[2:]))};
{dtype} max_ = {_IDENTITY_MAX.replace("{T}", dtype)};
for (int64_t k_ = 0; k_ < n_; ++k_) max_ = (x[k_] > max_ || x[k_] != x[k_]) ? x[k_] : max_;  // as ReduceMax
y = max_;
"""
    else:
        code = f"""
const int64_t n_ = {cexpr(product(shape[2:]))};
{dtype} sum_ = 0;
for (int64_t k_ = 0; k_ < n_; ++k_) sum_ += x[k_];
y = sum_ / ({dtype})n_;
"""
    sdfg, state = ctx.nested()
    add_map(state, "global_average_pool", index_ranges(shape[:2]), {"x": f"{x_conn}[{_subset(shape, spatial)}]"},
            code, {"y": f"{y_conn}[{_subset(shape, [], fixed_axes=spatial)}]"}, pointers=["x"])
    return sdfg


@expansion("InstanceNormalization", "GroupNormalization")
def instance_group_norm(ctx: Ctx):
    """One loop nest per (sample, group) over its contiguous channels x spatial block: a group is C/G adjacent
    channels in NCHW (InstanceNormalization: G = C)."""
    x_conn, y_conn = ctx.connector("in", 0), ctx.connector("out", 0)
    shape = ctx.shape(x_conn)
    channels, spatial = shape[1], cexpr(product(shape[2:]))
    groups = ctx.node.attr("num_groups") if ctx.node.op_type == "GroupNormalization" else channels
    per_group = f"({cexpr(channels)} / {cexpr(groups)})"
    dtype = ctx.desc(x_conn).dtype.ctype
    code = f"""
const int64_t s_ = {spatial}, n_ = {per_group} * s_, base_ = (i0 * {cexpr(channels)} + i1 * {per_group}) * s_;
double mean_ = 0;
for (int64_t k_ = 0; k_ < n_; ++k_) mean_ += x[base_ + k_];
mean_ /= n_;
double var_ = 0;
for (int64_t k_ = 0; k_ < n_; ++k_) {{ const double d_ = x[base_ + k_] - mean_; var_ += d_ * d_; }}
const double inv_ = 1.0 / std::sqrt(var_ / n_ + {float(ctx.node.attr('epsilon', 1e-5))!r});
for (int64_t k_ = 0; k_ < n_; ++k_) {{
    const int64_t c_ = i1 * {per_group} + k_ / s_;
    y[base_ + k_] = ({dtype})((x[base_ + k_] - mean_) * inv_ * scale[c_] + bias[c_]);
}}
"""
    whole = ", ".join(f"0:{d}" for d in shape)
    scale, bias = ctx.connector("in", 1), ctx.connector("in", 2)
    sdfg, state = ctx.nested()
    add_map(state, ctx.node.op_type.lower(), {"i0": shape[0], "i1": groups},
            {"x": f"{x_conn}[{whole}]", "scale": f"{scale}[0:{channels}]", "bias": f"{bias}[0:{channels}]"},
            code, {"y": f"{y_conn}[{whole}]"}, pointers=["x", "y", "scale", "bias"])
    return sdfg


@expansion("LpNormalization")
def lp_normalization(ctx: Ctx):
    l1 = ctx.node.attr("p", 2) == 1
    term, finish = ("std::fabs(v_)", "norm_") if l1 else ("v_ * v_", "std::sqrt(norm_)")
    return _rows_along_axis(ctx, lambda n, stride, dtype: f"""
double norm_ = 0;
for (int64_t k_ = 0; k_ < {n}; ++k_) {{ const double v_ = x[k_ * {stride}]; norm_ += {term}; }}
norm_ = {finish};
for (int64_t k_ = 0; k_ < {n}; ++k_) y[k_ * {stride}] = ({dtype})(norm_ == 0 ? 0.0 : x[k_ * {stride}] / norm_);
""")


@expansion("MeanVarianceNormalization")
def mean_variance_normalization(ctx: Ctx):
    """Two passes over the tensor: sums and sums of squares per kept index (in double), then the normalisation."""
    x_conn, y_conn = ctx.connector("in", 0), ctx.connector("out", 0)
    shape = ctx.shape(x_conn)
    axes = {normalize_axis(a, len(shape)) for a in ctx.node.attr("axes") or [0, 2, 3]}
    kept = [k for k in range(len(shape)) if k not in axes]
    strides = contiguous_strides([shape[k] for k in kept])
    # The kept index of element e_: its coordinate on each kept axis, in the kept axes' row-major order.
    element_strides = contiguous_strides(shape)
    key = " + ".join(f"((e_ / {cexpr(element_strides[k])}) % {cexpr(shape[k])}) * {cexpr(strides[i])}"
                     for i, k in enumerate(kept)) or "0"
    x, y = ctx.ptr(x_conn), ctx.ptr(y_conn)
    return ctx.tasklet(f"""
const int64_t n_ = {cexpr(product(shape))}, groups_ = {cexpr(product([shape[k] for k in kept]))};
const double count_ = (double)n_ / (double)groups_;
std::vector<double> sum_(groups_, 0.0), squares_(groups_, 0.0);
for (int64_t e_ = 0; e_ < n_; ++e_) {{ const double v_ = {x}[e_]; sum_[{key}] += v_; squares_[{key}] += v_ * v_; }}
for (int64_t e_ = 0; e_ < n_; ++e_) {{
  const int64_t g_ = {key};
  const double mean_ = sum_[g_] / count_;
  {y}[e_] = ({ctx.desc(y_conn).dtype.ctype})(({x}[e_] - mean_) / (std::sqrt(squares_[g_] / count_ - mean_ * mean_) + 1e-9));
}}
""", includes="#include <vector>")
