// ONNX Resize, GridSample and AffineGrid.
// - resize: separable passes, one per resampled axis; each computes its taps (source index and weight of every
//   output position, per ONNX's coordinate transformation and interpolation kernel) once, then streams
//   [outer, length, inner] rows in parallel, accumulating in double precision as ONNX's reference does (the
//   last pass stores the element type directly). Nearest
//   mode (no extrapolation, no excluded outside) copies rows of the input's own type instead: each output row is
//   one input row, so no arithmetic is needed and no value is rounded.
// - grid_sample: one parallel loop over (sample, output point), per-dimension taps, every channel.
// - affine_grid: theta (N x k x (k + 1)) times each grid point's normalised coordinates.
#pragma once

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <type_traits>
#include <vector>

namespace sdflow_kernels {

struct ResizeMode {
  int mode;            // 0 nearest, 1 linear, 2 cubic
  int transform;       // 0 half_pixel, 1 half_pixel_symmetric, 2 pytorch_half_pixel, 3 align_corners,
                       // 4 asymmetric, 5 tf_crop_and_resize
  int nearest;         // 0 round_prefer_floor, 1 round_prefer_ceil, 2 floor, 3 ceil
  bool antialias, exclude_outside;
  double cubic_a, extrapolation;
};

// One resampled axis: the tensor seen as [outer, len_in, inner] -> [outer, len_out, inner].
struct ResizeAxis {
  int64_t outer, len_in, len_out, inner;
  double scale, roi_start, roi_end;
};

// Taps of one axis: for output j, n source indices idx[j * n + k] (clamped into the input) and weights
// wt[j * n + k]; ext[j] marks outputs that take the extrapolation value (tf_crop_and_resize outside the roi).
// Returns n.
inline int64_t resize_taps(const ResizeMode& m, const ResizeAxis& a, std::vector<int64_t>& idx,
                           std::vector<double>& wt, std::vector<char>& ext) {
  const int64_t len_in = a.len_in, len_out = a.len_out;
  const double scale = a.scale, small = std::min(scale, 1.0);
  int64_t n = m.mode == 2 ? 4 : 2, first = 0;
  if (m.antialias && m.mode == 1) first = (int64_t)std::floor(-1.0 / small) + 1, n = 2 - 2 * first;
  if (m.antialias && m.mode == 2) first = (int64_t)std::floor(-2.0 / small) + 1, n = 2 - 2 * first;
  idx.assign(len_out * n, 0);
  wt.assign(len_out * n, 0.0);
  ext.assign(len_out, 0);
  const double width = scale * (double)len_in;
  auto cubic = [](double c, double t) {
    t = std::abs(t);
    if (t <= 1) return ((c + 2) * t - (c + 3)) * t * t + 1;
    if (t < 2) return ((c * t - 5 * c) * t + 8 * c) * t - 4 * c;
    return 0.0;
  };
  for (int64_t j = 0; j < len_out; ++j) {
    double x;
    if (m.transform == 0) {
      x = ((double)j + 0.5) / scale - 0.5;
    } else if (m.transform == 1) {
      const double adjust = (double)len_out / width, center = (double)len_in / 2;
      x = center * (1 - adjust) + ((double)j + 0.5) / scale - 0.5;
    } else if (m.transform == 2) {
      x = width == 1 ? -0.5 : ((double)j + 0.5) / scale - 0.5;
    } else if (m.transform == 3) {
      x = width == 1 ? 0.0 : (double)j * (double)(len_in - 1) / (width - 1);
    } else if (m.transform == 4) {
      x = (double)j / scale;
    } else {  // tf_crop_and_resize
      x = width == 1 ? (a.roi_end - a.roi_start) * (double)(len_in - 1) / 2
                     : (double)j * (a.roi_end - a.roi_start) * (double)(len_in - 1) / (width - 1);
      x += a.roi_start * (double)(len_in - 1);
      ext[j] = x < 0 || x > (double)(len_in - 1);
    }
    const double floor_x = std::floor(x);
    const double r = x == floor_x ? 1.0 : x - floor_x;  // in (0, 1]: the left neighbour is preferred
    double* w = wt.data() + j * n;
    if (m.mode == 0) {
      bool right;
      if (x == floor_x) right = true;
      else if (m.nearest == 0) right = r > 0.5;
      else if (m.nearest == 1) right = r >= 0.5;
      else right = m.nearest == 3;
      w[0] = right ? 0.0 : 1.0, w[1] = right ? 1.0 : 0.0;
    } else if (m.mode == 1 && !m.antialias) {
      w[0] = 1 - r, w[1] = r;
    } else if (m.mode == 1) {
      double sum = 0;
      for (int64_t k = 0; k < n; ++k) {
        w[k] = std::min(1.0, std::max(0.0, 1 - std::abs(((double)(first + k) - r) * small)));
        sum += w[k];
      }
      for (int64_t k = 0; k < n; ++k) w[k] /= sum;
    } else if (!m.antialias) {
      for (int64_t k = 0; k < 4; ++k) w[k] = cubic(m.cubic_a, (double)(k - 1) - r);
    } else {
      double sum = 0;
      for (int64_t k = 0; k < n; ++k) w[k] = cubic(m.cubic_a, small * ((double)(first + k) - r)), sum += w[k];
      for (int64_t k = 0; k < n; ++k) w[k] /= sum;
    }
    // The n source positions nearest x (ties to the smaller), as ONNX's edge-padded neighbour search.
    const int64_t pad = (n + 1) / 2;
    const double padded = x + (double)pad;
    const int64_t p = (int64_t)std::floor(padded);
    const double frac = padded - (double)p;
    const int64_t offset = n % 2 == 0 ? (frac == 0 ? -(n / 2) : -(n / 2) + 1)
                                      : (frac <= 0.5 ? -((n - 1) / 2) : -((n - 1) / 2) + 1);
    int64_t* i = idx.data() + j * n;
    double kept = 0;
    for (int64_t k = 0; k < n; ++k) {
      i[k] = p + offset + k - pad;
      if (m.exclude_outside && (i[k] < 0 || i[k] >= len_in)) w[k] = 0;
      kept += w[k];
      i[k] = std::min(std::max<int64_t>(i[k], 0), len_in - 1);
    }
    if (m.exclude_outside && kept != 0)
      for (int64_t k = 0; k < n; ++k) w[k] /= kept;
  }
  return n;
}

// A pass's double result stored as D: integers rounded to nearest and saturated.
template <class D>
inline D resize_store(double v) {
  if constexpr (std::is_integral_v<D>) {
    return (D)std::min<double>(std::max<double>(std::nearbyint(v), (double)std::numeric_limits<D>::lowest()),
                               (double)std::numeric_limits<D>::max());
  } else {
    return (D)v;
  }
}

// One weighted pass over axis a, src -> dst, summed in double (dst double between passes, the element type for
// the last one). Along the last axis (inner 1) each output sums its taps directly; otherwise rows of `inner`
// elements are weighted and added, through a per-thread double row when dst is not double.
template <class S, class D>
void resize_pass(const S* src, D* dst, const ResizeMode& m, const ResizeAxis& a) {
  std::vector<int64_t> idx;
  std::vector<double> wt;
  std::vector<char> ext;
  const int64_t n = resize_taps(m, a, idx, wt, ext), inner = a.inner;
  if (inner == 1) {
#pragma omp parallel for
    for (int64_t o = 0; o < a.outer; ++o) {
      const S* in = src + o * a.len_in;
      D* out = dst + o * a.len_out;
      for (int64_t j = 0; j < a.len_out; ++j) {
        double acc = 0;
        if (ext[j]) {
          acc = m.extrapolation;
        } else {
          for (int64_t k = 0; k < n; ++k) {
            const double w = wt[j * n + k];
            if (w != 0) acc += w * (double)in[idx[j * n + k]];
          }
        }
        out[j] = resize_store<D>(acc);
      }
    }
    return;
  }
#pragma omp parallel
  {
    static thread_local std::vector<double> scratch;
    if constexpr (!std::is_same_v<D, double>) scratch.resize(inner);
#pragma omp for collapse(2)
    for (int64_t o = 0; o < a.outer; ++o)
      for (int64_t j = 0; j < a.len_out; ++j) {
        D* target = dst + (o * a.len_out + j) * inner;
        double* row;
        if constexpr (std::is_same_v<D, double>) row = target;
        else row = scratch.data();
        if (ext[j]) {
          for (int64_t e = 0; e < inner; ++e) row[e] = m.extrapolation;
        } else {
          for (int64_t e = 0; e < inner; ++e) row[e] = 0;
          for (int64_t k = 0; k < n; ++k) {
            const double w = wt[j * n + k];
            if (w == 0) continue;
            const S* from = src + (o * a.len_in + idx[j * n + k]) * inner;
            for (int64_t e = 0; e < inner; ++e) row[e] += w * (double)from[e];
          }
        }
        if constexpr (!std::is_same_v<D, double>)
          for (int64_t e = 0; e < inner; ++e) target[e] = resize_store<D>(row[e]);
      }
  }
}

// One nearest pass over axis a: each output row is a copy of the input row its weight of 1 selects.
template <class T>
void resize_nearest_pass(const T* src, T* dst, const ResizeMode& m, const ResizeAxis& a) {
  std::vector<int64_t> idx;
  std::vector<double> wt;
  std::vector<char> ext;
  resize_taps(m, a, idx, wt, ext);
  std::vector<int64_t> row_of(a.len_out);
  for (int64_t j = 0; j < a.len_out; ++j) row_of[j] = wt[j * 2] == 1.0 ? idx[j * 2] : idx[j * 2 + 1];
  const int64_t inner = a.inner;
  if (inner == 1) {  // the last axis: a gather along each row
#pragma omp parallel for
    for (int64_t o = 0; o < a.outer; ++o) {
      const T* in = src + o * a.len_in;
      T* out = dst + o * a.len_out;
      for (int64_t j = 0; j < a.len_out; ++j) out[j] = in[row_of[j]];
    }
    return;
  }
#pragma omp parallel for collapse(2)
  for (int64_t o = 0; o < a.outer; ++o)
    for (int64_t j = 0; j < a.len_out; ++j)
      std::memcpy(dst + (o * a.len_out + j) * inner, src + (o * a.len_in + row_of[j]) * inner, sizeof(T) * inner);
}

// Whether resize runs as nearest passes (copies): nearest mode, no tf_crop_and_resize extrapolation and no
// excluded outside taps (there a weight can become 0 and the output the extrapolation or 0).
inline bool resize_copies(const ResizeMode& m) { return m.mode == 0 && m.transform != 5 && !m.exclude_outside; }

// Resize x into y through the passes of `axes` (count of them, in order; count >= 1): T the element type
// (float, double, float16/bfloat16 types, integers), integer outputs rounded to nearest and saturated.
template <class T>
void resize(const T* x, T* y, const ResizeMode& m, const ResizeAxis* axes, int count) {
  auto size_after = [&](int pass) { return axes[pass].outer * axes[pass].len_out * axes[pass].inner; };
  if (resize_copies(m)) {
    static thread_local std::vector<T> buffers[2];
    const T* source = x;
    for (int pass = 0; pass < count; ++pass) {
      T* target = y;
      if (pass < count - 1) {
        buffers[pass % 2].resize(size_after(pass));
        target = buffers[pass % 2].data();
      }
      resize_nearest_pass(source, target, m, axes[pass]);
      source = target;
    }
    return;
  }
  // Passes in double; the last one stores the element type straight into y.
  static thread_local std::vector<double> buffers[2];
  const double* source = nullptr;
  for (int pass = 0; pass < count; ++pass) {
    const bool last = pass == count - 1;
    double* target = nullptr;
    if (!last) {
      buffers[pass % 2].resize(size_after(pass));  // every element is written by the pass
      target = buffers[pass % 2].data();
    }
    if (pass == 0 && last) resize_pass(x, y, m, axes[pass]);
    else if (pass == 0) resize_pass(x, target, m, axes[pass]);
    else if (last) resize_pass(source, y, m, axes[pass]);
    else resize_pass(source, target, m, axes[pass]);
    source = target;
  }
}

struct GridSampleGeometry {
  int64_t rank, n, c, points;  // spatial rank (1-3), samples, channels, output points per sample
  int64_t dims[3];             // input's spatial sizes (1 past the rank)
  int mode;                    // 0 nearest, 1 linear, 2 cubic
  int padding;                 // 0 zeros, 1 border, 2 reflection
  bool align_corners;
};

// Reflects v into [lo, hi] (GridSample's reflection padding).
inline float grid_reflect(float v, float lo, float hi) {
  const float range = hi - lo;
  if (v < lo) {
    const float d = lo - v;
    const int64_t k = (int64_t)(d / range);
    const float r = d - k * range;
    return k % 2 == 0 ? lo + r : hi - r;
  }
  if (v > hi) {
    const float d = v - hi;
    const int64_t k = (int64_t)(d / range);
    const float r = d - k * range;
    return k % 2 == 0 ? hi - r : lo + r;
  }
  return v;
}

// x [N][C][dims...], grid [N][points][rank] (x first), y [N][C][points]; accumulation in double.
template <class T, class G>
void grid_sample(const T* x, const G* grid, T* y, const GridSampleGeometry& g) {
  const int64_t rank = g.rank, taps = g.mode == 0 ? 1 : (g.mode == 1 ? 2 : 4);
  int64_t plane = 1;
  for (int64_t k = 0; k < rank; ++k) plane *= g.dims[k];
  auto cubic = [](float t, float* w) {
    const float a = -0.75f;
    t = std::abs(t);
    w[0] = ((a * (t + 1) - 5 * a) * (t + 1) + 8 * a) * (t + 1) - 4 * a;
    w[1] = ((a + 2) * t - (a + 3)) * t * t + 1;
    w[2] = ((a + 2) * (1 - t) - (a + 3)) * (1 - t) * (1 - t) + 1;
    w[3] = ((a * (2 - t) - 5 * a) * (2 - t) + 8 * a) * (2 - t) - 4 * a;
  };
#pragma omp parallel for collapse(2)
  for (int64_t n = 0; n < g.n; ++n)
    for (int64_t o = 0; o < g.points; ++o) {
      int64_t idx[3][4];
      float wt[3][4];
      bool ok[3][4];
      for (int64_t k = 0; k < rank; ++k) {
        const float d = (float)g.dims[k];
        const float lo = g.align_corners ? 0.0f : -0.5f, hi = g.align_corners ? d - 1.0f : d - 0.5f;
        const float coordinate = (float)grid[(n * g.points + o) * rank + (rank - 1 - k)];
        float v = g.align_corners ? (coordinate + 1) / 2.0f * (d - 1) : ((coordinate + 1) * d - 1) / 2.0f;
        if (g.mode == 0) v = std::nearbyint(v);
        if (v < lo || v > hi) {
          if (g.padding == 1) v = std::min(std::max(v, 0.0f), d - 1);
          else if (g.padding == 2) v = grid_reflect(v, lo, hi);
        }
        int64_t first;
        if (g.mode == 0) {
          first = (int64_t)v, wt[k][0] = 1;
        } else {
          const float f = std::floor(v);
          first = (int64_t)f - (g.mode == 2 ? 1 : 0);
          if (g.mode == 1) {
            const float t = std::abs(v - f);
            wt[k][0] = 1 - t, wt[k][1] = t;
          } else {
            cubic(v - f, wt[k]);
          }
        }
        for (int64_t t = 0; t < taps; ++t) {
          int64_t i = first + t;
          bool inside = true;
          if (g.padding == 0) inside = i >= 0 && i < g.dims[k];
          else if (g.padding == 1) i = std::min<int64_t>(std::max<int64_t>(i, 0), g.dims[k] - 1);
          else i = (int64_t)grid_reflect((float)i, lo, hi);
          idx[k][t] = i, ok[k][t] = inside;
        }
      }
      int64_t combos = 1;
      for (int64_t k = 0; k < rank; ++k) combos *= taps;
      for (int64_t c = 0; c < g.c; ++c) {
        const T* image = x + (n * g.c + c) * plane;
        double acc = 0;
        for (int64_t combo = 0; combo < combos; ++combo) {
          int64_t rest = combo, offset = 0, stride = 1;
          double w = 1;
          bool all_inside = true;
          for (int64_t k = rank - 1; k >= 0; --k) {
            const int64_t t = rest % taps;
            rest /= taps;
            all_inside = all_inside && ok[k][t];
            w *= wt[k][t];
            offset += idx[k][t] * stride;
            stride *= g.dims[k];
          }
          if (all_inside) acc += w * (double)image[offset];
        }
        y[(n * g.c + c) * g.points + o] = (T)acc;
      }
    }
}

// grid [N][sizes...][k] = theta[n] (k x (k + 1)) times (coordinates of the point, 1), coordinate j of a point
// being spatial axis k - 1 - j normalised to [-1, 1] (align_corners: the corner pixels' centres, else their
// outer edges); k = 2 or 3, sizes[k].
template <class T>
void affine_grid(const T* theta, T* grid, int64_t n, const int64_t* sizes, int64_t k, bool align_corners) {
  int64_t points = 1;
  for (int64_t i = 0; i < k; ++i) points *= sizes[i];
#pragma omp parallel for collapse(2)
  for (int64_t b = 0; b < n; ++b)
    for (int64_t p = 0; p < points; ++p) {
      double u[4] = {0, 0, 0, 1.0};
      int64_t rest = p;
      for (int64_t axis = k - 1; axis >= 0; --axis) {
        const int64_t i = rest % sizes[axis], size = sizes[axis];
        rest /= size;
        const double c = align_corners ? (size > 1 ? -1.0 + 2.0 * i / (double)(size - 1) : -1.0)
                                       : ((2.0 * i + 1) / (double)size - 1.0);
        u[k - 1 - axis] = c;
      }
      u[k] = 1.0;
      const T* t = theta + b * k * (k + 1);
      T* out = grid + (b * points + p) * k;
      for (int64_t r = 0; r < k; ++r) {
        double s = 0;
        for (int64_t j = 0; j <= k; ++j) s += (double)t[r * (k + 1) + j] * u[j];
        out[r] = (T)s;
      }
    }
}

}  // namespace sdflow_kernels
