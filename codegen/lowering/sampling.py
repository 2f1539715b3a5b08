"""AffineGrid as one loop over the output grid points.

GridSample as one parallel loop over (sample, channel, output point) with per-dimension taps.

Resize as separable passes, one per resampled axis: each pass computes its taps (source index and weight of
every output position, per ONNX's coordinate transformation and interpolation kernel) once, then streams
[outer, length, inner] rows in parallel, accumulating in double precision as ONNX's reference does."""
from __future__ import annotations

from sdflow.ir.ops.sampling import GRID_SAMPLE_MODES, resize_plan
from sdflow.ir.types import TensorType
from ._expansion import Ctx, cexpr, expansion, product

# Per-axis taps: fills idx_/wt_ (len_out * n_) and ext_ (len_out; tf_crop_and_resize extrapolation).
_TAPS = r"""
auto taps_ = [&](int64_t len_in_, int64_t len_out_, double scale_, double roi_start_, double roi_end_,
                 std::vector<int64_t>& idx_, std::vector<double>& wt_, std::vector<char>& ext_) -> int64_t {
  const double small_ = std::min(scale_, 1.0);
  int64_t n_ = MODE_ == 2 ? 4 : 2;
  int64_t first_ = 0;
  if (ANTIALIAS_ && MODE_ == 1) { first_ = (int64_t)std::floor(-1.0 / small_) + 1; n_ = 2 - 2 * first_; }
  if (ANTIALIAS_ && MODE_ == 2) { first_ = (int64_t)std::floor(-2.0 / small_) + 1; n_ = 2 - 2 * first_; }
  idx_.assign(len_out_ * n_, 0); wt_.assign(len_out_ * n_, 0.0); ext_.assign(len_out_, 0);
  const double width_ = scale_ * (double)len_in_;
  for (int64_t j_ = 0; j_ < len_out_; ++j_) {
    double x_;
    if (TRANSFORM_ == 0) {
      x_ = ((double)j_ + 0.5) / scale_ - 0.5;
    } else if (TRANSFORM_ == 1) {
      const double adjust_ = (double)len_out_ / width_, center_ = (double)len_in_ / 2;
      x_ = center_ * (1 - adjust_) + ((double)j_ + 0.5) / scale_ - 0.5;
    } else if (TRANSFORM_ == 2) {
      x_ = width_ == 1 ? -0.5 : ((double)j_ + 0.5) / scale_ - 0.5;
    } else if (TRANSFORM_ == 3) {
      x_ = width_ == 1 ? 0.0 : (double)j_ * (double)(len_in_ - 1) / (width_ - 1);
    } else if (TRANSFORM_ == 4) {
      x_ = (double)j_ / scale_;
    } else {  // tf_crop_and_resize
      x_ = width_ == 1 ? (roi_end_ - roi_start_) * (double)(len_in_ - 1) / 2
                       : (double)j_ * (roi_end_ - roi_start_) * (double)(len_in_ - 1) / (width_ - 1);
      x_ += roi_start_ * (double)(len_in_ - 1);
      ext_[j_] = x_ < 0 || x_ > (double)(len_in_ - 1);
    }
    const double floor_ = std::floor(x_);
    const double r_ = x_ == floor_ ? 1.0 : x_ - floor_;  // in (0, 1]: the left neighbour is preferred
    double* w_ = wt_.data() + j_ * n_;
    if (MODE_ == 0) {
      bool right_;
      if (x_ == floor_) right_ = true;
      else if (NEAREST_ == 0) right_ = r_ > 0.5;
      else if (NEAREST_ == 1) right_ = r_ >= 0.5;
      else right_ = NEAREST_ == 3;
      w_[0] = right_ ? 0.0 : 1.0; w_[1] = right_ ? 1.0 : 0.0;
    } else if (MODE_ == 1 && !ANTIALIAS_) {
      w_[0] = 1 - r_; w_[1] = r_;
    } else if (MODE_ == 1) {
      double sum_ = 0;
      for (int64_t k_ = 0; k_ < n_; ++k_) {
        w_[k_] = std::min(1.0, std::max(0.0, 1 - std::abs(((double)(first_ + k_) - r_) * small_)));
        sum_ += w_[k_];
      }
      for (int64_t k_ = 0; k_ < n_; ++k_) w_[k_] /= sum_;
    } else {
      auto cubic_ = [](double a_, double t_) {
        t_ = std::abs(t_);
        if (t_ <= 1) return ((a_ + 2) * t_ - (a_ + 3)) * t_ * t_ + 1;
        if (t_ < 2) return ((a_ * t_ - 5 * a_) * t_ + 8 * a_) * t_ - 4 * a_;
        return 0.0;
      };
      if (!ANTIALIAS_) {
        for (int64_t k_ = 0; k_ < 4; ++k_) w_[k_] = cubic_(CUBIC_A_, (double)(k_ - 1) - r_);
      } else {
        double sum_ = 0;
        for (int64_t k_ = 0; k_ < n_; ++k_) { w_[k_] = cubic_(CUBIC_A_, small_ * ((double)(first_ + k_) - r_)); sum_ += w_[k_]; }
        for (int64_t k_ = 0; k_ < n_; ++k_) w_[k_] /= sum_;
      }
    }
    // The n_ source positions nearest x_ (ties to the smaller), as ONNX's edge-padded neighbour search.
    const int64_t pad_ = (n_ + 1) / 2;
    const double padded_ = x_ + (double)pad_;
    const int64_t p_ = (int64_t)std::floor(padded_);
    const double frac_ = padded_ - (double)p_;
    const int64_t offset_ = n_ % 2 == 0 ? (frac_ == 0 ? -(n_ / 2) : -(n_ / 2) + 1)
                                        : (frac_ <= 0.5 ? -((n_ - 1) / 2) : -((n_ - 1) / 2) + 1);
    int64_t* i_ = idx_.data() + j_ * n_;
    double kept_ = 0;
    for (int64_t k_ = 0; k_ < n_; ++k_) {
      i_[k_] = p_ + offset_ + k_ - pad_;
      if (EXCLUDE_OUTSIDE_ && (i_[k_] < 0 || i_[k_] >= len_in_)) w_[k_] = 0;
      kept_ += w_[k_];
      i_[k_] = std::min(std::max<int64_t>(i_[k_], 0), len_in_ - 1);
    }
    if (EXCLUDE_OUTSIDE_ && kept_ != 0) for (int64_t k_ = 0; k_ < n_; ++k_) w_[k_] /= kept_;
  }
  return n_;
};
auto pass_ = [&](const auto* src_, double* dst_, int64_t outer_, int64_t len_in_, int64_t len_out_, int64_t inner_,
                 double scale_, double roi_start_, double roi_end_) {
  std::vector<int64_t> idx_; std::vector<double> wt_; std::vector<char> ext_;
  const int64_t n_ = taps_(len_in_, len_out_, scale_, roi_start_, roi_end_, idx_, wt_, ext_);
  #pragma omp parallel for collapse(2)
  for (int64_t o_ = 0; o_ < outer_; ++o_)
    for (int64_t j_ = 0; j_ < len_out_; ++j_) {
      double* row_ = dst_ + (o_ * len_out_ + j_) * inner_;
      if (ext_[j_]) { for (int64_t e_ = 0; e_ < inner_; ++e_) row_[e_] = EXTRAPOLATION_; continue; }
      for (int64_t e_ = 0; e_ < inner_; ++e_) row_[e_] = 0;
      for (int64_t k_ = 0; k_ < n_; ++k_) {
        const double w_ = wt_[j_ * n_ + k_];
        if (w_ == 0) continue;
        const auto* from_ = src_ + (o_ * len_in_ + idx_[j_ * n_ + k_]) * inner_;
        for (int64_t e_ = 0; e_ < inner_; ++e_) row_[e_] += w_ * (double)from_[e_];
      }
    }
};
"""

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
    x, y = ctx.connector("in", 0), ctx.connector("out", 0)
    x_desc = ctx.desc(x)
    x_type = TensorType(x_desc.dtype.as_numpy_dtype(), ctx.shape(x))
    plan = resize_plan(ctx.node, x_type, ctx.static(1), ctx.static(2), ctx.static(3))
    node = ctx.node
    constants = {
        "MODE_": _MODES[node.attr("mode", "nearest")],
        "TRANSFORM_": _TRANSFORMS[node.attr("coordinate_transformation_mode", "half_pixel")],
        "NEAREST_": _NEAREST.get(node.attr("nearest_mode", "round_prefer_floor"), 0),
        "ANTIALIAS_": int(bool(node.attr("antialias", 0))),
        "EXCLUDE_OUTSIDE_": int(bool(node.attr("exclude_outside", 0))),
    }
    code = "".join(f"constexpr int64_t {k} = {v};\n" for k, v in constants.items())
    code += f"constexpr double CUBIC_A_ = {_double(node.attr('cubic_coeff_a', -0.75))};\n"
    code += f"constexpr double EXTRAPOLATION_ = {_double(node.attr('extrapolation_value', 0.0))};\n"
    code += _TAPS
    out_type = ctx.desc(y).dtype.ctype
    x_ptr, y_ptr = ctx.ptr(x), ctx.ptr(y)
    shape = list(x_type.shape)
    if not plan:  # every axis keeps its length: a copy
        return ctx.tasklet(f"std::copy({x_ptr}, {x_ptr} + {cexpr(product(shape))}, {y_ptr});")
    code += "std::vector<double> a_, b_;\n"
    source = x_ptr
    for number, axis in enumerate(plan):
        outer, inner = product(shape[:axis.axis]), product(shape[axis.axis + 1:])
        shape[axis.axis] = axis.out_dim
        target = "a_" if number % 2 == 0 else "b_"
        scale = _double(axis.scale) if axis.scale is not None else \
            f"(double)({cexpr(axis.out_dim)}) / (double)({cexpr(axis.in_dim)})"
        code += (f"{target}.assign({cexpr(product(shape))}, 0.0);\n"
                 f"pass_({source}, {target}.data(), {cexpr(outer)}, {cexpr(axis.in_dim)}, {cexpr(axis.out_dim)}, "
                 f"{cexpr(inner)}, {scale}, {_double(axis.roi[0])}, {_double(axis.roi[1])});\n")
        source = f"{target}.data()"
    total = cexpr(product(shape))
    if x_desc.dtype.ctype in ("float", "double", "dace::float16", "dace::bfloat16"):
        store = f"{y_ptr}[e_] = ({out_type}){source}[e_];"
    else:
        store = (f"{y_ptr}[e_] = ({out_type})std::min<double>(std::max<double>(std::nearbyint({source}[e_]), "
                 f"(double)std::numeric_limits<{out_type}>::lowest()), (double)std::numeric_limits<{out_type}>::max());")
    code += f"#pragma omp parallel for\nfor (int64_t e_ = 0; e_ < {total}; ++e_) {store}\n"
    return ctx.tasklet(code)


_GRID_SAMPLE = r"""
const int64_t R_ = {rank}, N_ = {n}, C_ = {c}, G_ = {points};
const int64_t dims_[3] = {{{dims}}};
int64_t plane_ = 1; for (int64_t k_ = 0; k_ < R_; ++k_) plane_ *= dims_[k_];
constexpr int64_t MODE_ = {mode}, PAD_ = {padding}, ALIGN_ = {align}, T_ = MODE_ == 0 ? 1 : (MODE_ == 1 ? 2 : 4);
auto reflect_ = [](float v_, float lo_, float hi_) {{
  const float range_ = hi_ - lo_;
  if (v_ < lo_) {{ const float d_ = lo_ - v_; const int64_t k_ = (int64_t)(d_ / range_); const float r_ = d_ - k_ * range_;
                  return k_ % 2 == 0 ? lo_ + r_ : hi_ - r_; }}
  if (v_ > hi_) {{ const float d_ = v_ - hi_; const int64_t k_ = (int64_t)(d_ / range_); const float r_ = d_ - k_ * range_;
                  return k_ % 2 == 0 ? hi_ - r_ : lo_ + r_; }}
  return v_;
}};
auto cubic_ = [](float t_, float* w_) {{
  const float a_ = -0.75f;
  t_ = std::abs(t_);
  w_[0] = ((a_ * (t_ + 1) - 5 * a_) * (t_ + 1) + 8 * a_) * (t_ + 1) - 4 * a_;
  w_[1] = ((a_ + 2) * t_ - (a_ + 3)) * t_ * t_ + 1;
  w_[2] = ((a_ + 2) * (1 - t_) - (a_ + 3)) * (1 - t_) * (1 - t_) + 1;
  w_[3] = ((a_ * (2 - t_) - 5 * a_) * (2 - t_) + 8 * a_) * (2 - t_) - 4 * a_;
}};
#pragma omp parallel for collapse(2)
for (int64_t n_ = 0; n_ < N_; ++n_)
  for (int64_t o_ = 0; o_ < G_; ++o_) {{
    int64_t idx_[3][4]; float wt_[3][4]; bool ok_[3][4];
    for (int64_t k_ = 0; k_ < R_; ++k_) {{
      const float d_ = (float)dims_[k_];
      const float lo_ = ALIGN_ ? 0.0f : -0.5f, hi_ = ALIGN_ ? d_ - 1.0f : d_ - 0.5f;
      const float g_ = (float){grid}[(n_ * G_ + o_) * R_ + (R_ - 1 - k_)];
      float x_ = ALIGN_ ? (g_ + 1) / 2.0f * (d_ - 1) : ((g_ + 1) * d_ - 1) / 2.0f;
      if (MODE_ == 0) x_ = std::nearbyint(x_);
      if (x_ < lo_ || x_ > hi_) {{
        if (PAD_ == 1) x_ = std::min(std::max(x_, 0.0f), d_ - 1);
        else if (PAD_ == 2) x_ = reflect_(x_, lo_, hi_);
      }}
      int64_t first_;
      if (MODE_ == 0) {{ first_ = (int64_t)x_; wt_[k_][0] = 1; }}
      else {{
        const float f_ = std::floor(x_);
        first_ = (int64_t)f_ - (MODE_ == 2 ? 1 : 0);
        if (MODE_ == 1) {{ const float t_ = std::abs(x_ - f_); wt_[k_][0] = 1 - t_; wt_[k_][1] = t_; }}
        else cubic_(x_ - f_, wt_[k_]);
      }}
      for (int64_t t_ = 0; t_ < T_; ++t_) {{
        int64_t i_ = first_ + t_;
        bool ok_now_ = true;
        if (PAD_ == 0) ok_now_ = i_ >= 0 && i_ < dims_[k_];
        else if (PAD_ == 1) i_ = std::min<int64_t>(std::max<int64_t>(i_, 0), dims_[k_] - 1);
        else i_ = (int64_t)reflect_((float)i_, lo_, hi_);
        idx_[k_][t_] = i_; ok_[k_][t_] = ok_now_;
      }}
    }}
    int64_t combos_ = 1; for (int64_t k_ = 0; k_ < R_; ++k_) combos_ *= T_;
    for (int64_t c_ = 0; c_ < C_; ++c_) {{
      const auto* image_ = {x} + (n_ * C_ + c_) * plane_;
      double acc_ = 0;
      for (int64_t m_ = 0; m_ < combos_; ++m_) {{
        int64_t rest_ = m_, offset_ = 0; double w_ = 1; bool ok_all_ = true;
        for (int64_t k_ = R_ - 1; k_ >= 0; --k_) {{
          const int64_t t_ = rest_ % T_; rest_ /= T_;
          ok_all_ = ok_all_ && ok_[k_][t_]; w_ *= wt_[k_][t_];
        }}
        if (!ok_all_) continue;
        rest_ = m_;
        int64_t stride_ = 1;
        for (int64_t k_ = R_ - 1; k_ >= 0; --k_) {{
          const int64_t t_ = rest_ % T_; rest_ /= T_;
          offset_ += idx_[k_][t_] * stride_; stride_ *= dims_[k_];
        }}
        acc_ += w_ * (double)image_[offset_];
      }}
      {y}[(n_ * C_ + c_) * G_ + o_] = ({ctype})acc_;
    }}
  }}
"""


@expansion("GridSample")
def grid_sample(ctx: Ctx):
    x, grid, y = ctx.connector("in", 0), ctx.connector("in", 1), ctx.connector("out", 0)
    x_shape, grid_shape = ctx.shape(x), ctx.shape(grid)
    rank = len(x_shape) - 2
    dims = list(x_shape[2:]) + [1] * (3 - rank)
    code = _GRID_SAMPLE.format(
        rank=rank, n=cexpr(x_shape[0]), c=cexpr(x_shape[1]), points=cexpr(product(grid_shape[1:-1])),
        dims=", ".join(cexpr(d) for d in dims),
        mode={"nearest": 0, "linear": 1, "cubic": 2}[GRID_SAMPLE_MODES[ctx.node.attr("mode", "linear")]],
        padding={"zeros": 0, "border": 1, "reflection": 2}[ctx.node.attr("padding_mode", "zeros")],
        align=int(bool(ctx.node.attr("align_corners", 0))), ctype=ctx.desc(y).dtype.ctype,
        x=ctx.ptr(x), grid=ctx.ptr(grid), y=ctx.ptr(y))
    return ctx.tasklet(code)


@expansion("AffineGrid")
def affine_grid(ctx: Ctx):
    theta, grid = ctx.connector("in", 0), ctx.connector("out", 0)
    shape = ctx.shape(grid)  # [N, spatial..., k]
    spatial = shape[1:-1]
    k = len(spatial)
    ctype = ctx.desc(grid).dtype.ctype
    align = bool(ctx.node.attr("align_corners", 0))
    lines = [f"const int64_t N_ = {cexpr(shape[0])};"]
    lines += [f"const int64_t L{i}_ = {cexpr(d)};" for i, d in enumerate(spatial)]
    loops = "".join(f"for (int64_t i{i}_ = 0; i{i}_ < L{i}_; ++i{i}_) " for i in range(k))
    coords = []
    for i in range(k):  # coordinate j of the grid point is spatial axis k - 1 - j (x first)
        axis = k - 1 - i
        if align:
            coords.append(f"(L{axis}_ > 1 ? -1.0 + 2.0 * i{axis}_ / (double)(L{axis}_ - 1) : -1.0)")
        else:
            coords.append(f"((2.0 * i{axis}_ + 1) / (double)L{axis}_ - 1.0)")
    flat = "0"
    for i in range(k):
        flat = f"({flat}) * L{i}_ + i{i}_"
    body = "const double u_[4] = {" + ", ".join(coords) + ", 1.0};\n"
    body += f"{ctype}* out_ = {ctx.ptr(grid)} + ((n_ * {cexpr(product(spatial))}) + {flat}) * {k};\n"
    body += f"const {ctype}* t_ = {ctx.ptr(theta)} + n_ * {k * (k + 1)};\n"
    body += (f"for (int64_t r_ = 0; r_ < {k}; ++r_) {{ double s_ = 0; "
             f"for (int64_t j_ = 0; j_ <= {k}; ++j_) s_ += (double)t_[r_ * {k + 1} + j_] * u_[j_]; "
             f"out_[r_] = ({ctype})s_; }}\n")
    code = "\n".join(lines) + f"\n#pragma omp parallel for\nfor (int64_t n_ = 0; n_ < N_; ++n_) {loops}{{\n{body}}}\n"
    return ctx.tasklet(code)


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
    code = f"""
std::vector<int64_t> batch_({num_rois});
for (int64_t r_ = 0; r_ < {num_rois}; ++r_) {{
    const int64_t b_ = (int64_t){ctx.ptr(indices)}[r_];
    batch_[r_] = b_ < 0 ? 0 : (b_ >= {n} ? {n} - 1 : b_);
}}
const sdflow_kernels::RoiAlignGeometry geometry_{{{geometry}}};
sdflow_kernels::roi_align({ctx.ptr(x)}, {ctx.ptr(rois)}, batch_.data(), geometry_, {ctx.ptr(y)});
"""
    return ctx.tasklet(code, includes='#include <vector>\n#include "roi_align.h"')
