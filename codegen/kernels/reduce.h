// Reductions and normalisations, one row (or one reduced block) per call: lowering maps the calls over the kept
// axes in parallel. T is the element type, Acc the type a kernel computes in (float for float16 and bfloat16,
// rounded once when stored, as numpy does; the element type otherwise, integers included).
// - reduce: ReduceSum/Mean/Max/Min/Prod/L1/L2/SumSquare/LogSum/LogSumExp over up to 8 reduced axes;
// - arg_reduce: ArgMax/ArgMin along one axis (first or last of equal values);
// - softmax_row (Softmax, LogSoftmax; float16 rounded where ONNX's reference rounds), hardmax_row;
// - layer_norm_row (LayerNormalization, RMSNormalization), lp_normalize_row, global_pool,
//   group_norm (InstanceNormalization, GroupNormalization), mean_variance_normalization;
// - cumulative_row: CumSum and CumProd.
#pragma once

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <type_traits>
#include <vector>

#include "vmath.h"

namespace sdflow_kernels {

enum class ReduceOp { sum, mean, max, min, prod, l1, l2, sum_square, log_sum, log_sum_exp };

template <class Acc>
constexpr Acc lowest_or_minus_infinity() {
  return std::numeric_limits<Acc>::has_infinity ? -std::numeric_limits<Acc>::infinity()
                                                : std::numeric_limits<Acc>::lowest();
}
template <class Acc>
constexpr Acc largest_or_infinity() {
  return std::numeric_limits<Acc>::has_infinity ? std::numeric_limits<Acc>::infinity()
                                                : std::numeric_limits<Acc>::max();
}

// f(offset) for every element of the reduced block: `rank` axes of sizes[k] elements strides[k] apart (the last
// one innermost, a plain loop the compiler can vectorise).
template <class F>
inline void for_each_reduced(int rank, const int64_t* sizes, const int64_t* strides, F&& f) {
  if (rank == 0) {
    f(int64_t(0));
    return;
  }
  for (int k = 0; k < rank; ++k)
    if (sizes[k] == 0) return;
  int64_t index[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  const int64_t inner = sizes[rank - 1], step = strides[rank - 1];
  for (;;) {
    int64_t base = 0;
    for (int k = 0; k < rank - 1; ++k) base += index[k] * strides[k];
    for (int64_t i = 0; i < inner; ++i) f(base + i * step);
    int k = rank - 2;
    for (; k >= 0; --k) {
      if (++index[k] < sizes[k]) break;
      index[k] = 0;
    }
    if (k < 0) return;
  }
}

// The reduction of x's block (rank <= 8 axes). A NaN anywhere in a Max/Min block is the result (as ONNX Runtime):
// once the accumulator is NaN no comparison replaces it. LogSumExp is shifted by the maximum, so exp does not
// overflow; an empty block gives -inf.
template <ReduceOp OP, class Acc, class T>
Acc reduce(const T* x, int rank, const int64_t* sizes, const int64_t* strides) {
  int64_t count = 1;
  for (int k = 0; k < rank; ++k) count *= sizes[k];
  if constexpr (OP == ReduceOp::log_sum_exp) {
    Acc top = lowest_or_minus_infinity<Acc>();
    for_each_reduced(rank, sizes, strides, [&](int64_t at) { top = std::max<Acc>(top, (Acc)x[at]); });
    Acc acc = 0;
    for_each_reduced(rank, sizes, strides, [&](int64_t at) { acc += std::exp((Acc)x[at] - top); });
    return std::isinf((double)top) ? top : (Acc)(std::log(acc) + top);
  } else {
    Acc acc = OP == ReduceOp::max ? lowest_or_minus_infinity<Acc>()
              : OP == ReduceOp::min ? largest_or_infinity<Acc>()
              : OP == ReduceOp::prod ? (Acc)1 : (Acc)0;
    for_each_reduced(rank, sizes, strides, [&](int64_t at) {
      const Acc v = (Acc)x[at];
      if constexpr (OP == ReduceOp::sum || OP == ReduceOp::mean || OP == ReduceOp::log_sum) acc += v;
      else if constexpr (OP == ReduceOp::max) acc = (v > acc || v != v) ? v : acc;
      else if constexpr (OP == ReduceOp::min) acc = (v < acc || v != v) ? v : acc;
      else if constexpr (OP == ReduceOp::prod) acc *= v;
      else if constexpr (OP == ReduceOp::l1) acc += (v < 0 ? -v : v);
      else acc += v * v;  // l2, sum_square
    });
    if constexpr (OP == ReduceOp::mean) acc = acc / (Acc)(count);
    if constexpr (OP == ReduceOp::l2) acc = (Acc)std::sqrt(acc);
    if constexpr (OP == ReduceOp::log_sum) acc = (Acc)std::log(acc);
    return acc;
  }
}

// The index along the axis (n elements `stride` apart) of the largest (max) or smallest value; with `last`, the
// last of equal ones.
template <class T>
int64_t arg_reduce(const T* x, int64_t n, int64_t stride, bool max, bool last) {
  int64_t best = 0;
  T value = x[0];
  for (int64_t k = 1; k < n; ++k) {
    const T v = x[k * stride];
    const bool better = max ? (last ? v >= value : v > value) : (last ? v <= value : v < value);
    if (better) value = v, best = k;
  }
  return best;
}

// exp for the kernels' accumulator: vmath.h's vectorisable form for float.
template <class Acc>
inline Acc exp_of(Acc v) {
  if constexpr (std::is_same_v<Acc, float>) return exp_f(v);
  else return std::exp(v);
}

// Softmax (or LogSoftmax) of one row: n elements `stride` apart, x may be y.
template <class Acc, class T>
void softmax_row(const T* x, T* y, int64_t n, int64_t stride, bool log) {
  Acc top = x[0];
  for (int64_t k = 1; k < n; ++k) top = std::max<Acc>(top, x[k * stride]);
  Acc sum = 0;
  if (log) {
#pragma omp simd reduction(+ : sum)
    for (int64_t k = 0; k < n; ++k) sum += exp_of<Acc>((Acc)x[k * stride] - top);
    const Acc log_sum = std::log(sum);
    for (int64_t k = 0; k < n; ++k) y[k * stride] = (Acc)x[k * stride] - top - log_sum;
    return;
  }
#pragma omp simd reduction(+ : sum)
  for (int64_t k = 0; k < n; ++k) {
    const Acc e = exp_of<Acc>((Acc)x[k * stride] - top);
    sum += e;
    y[k * stride] = e;
  }
  const Acc inv = (Acc)1 / sum;
  for (int64_t k = 0; k < n; ++k) y[k * stride] *= inv;
}

// float16 Softmax rounded where ONNX's reference (numpy float16) rounds: x - max, exp, the sum, the quotient. H:
// the float16 type (dace::float16 in generated code).
template <class H>
void softmax_row_half(const H* x, H* y, int64_t n, int64_t stride) {
  float top = x[0];
  for (int64_t k = 1; k < n; ++k) top = std::max<float>(top, x[k * stride]);
  auto half = [](float v) { return (float)(H)v; };
  float sum = 0;
  for (int64_t k = 0; k < n; ++k) sum += half(std::exp(half((float)x[k * stride] - top)));
  sum = half(sum);
  for (int64_t k = 0; k < n; ++k) y[k * stride] = half(std::exp(half((float)x[k * stride] - top))) / sum;
}

// Hardmax: 1 at the first largest element of the row, 0 elsewhere.
template <class T>
void hardmax_row(const T* x, T* y, int64_t n, int64_t stride) {
  int64_t best = 0;
  for (int64_t k = 1; k < n; ++k)
    if (x[k * stride] > x[best * stride]) best = k;
  for (int64_t k = 0; k < n; ++k) y[k * stride] = k == best ? (T)1 : (T)0;
}

struct NormStatistics {
  float mean, inv_std;
};

// LayerNormalization (or, with rms, RMSNormalization: no centring, no bias) of one contiguous row of n elements
// in float: y = (x - mean) * inv_std * scale + bias; scale and bias (either may be null) hold n values, or one
// when scale_step / bias_step is 0. x may be y. Returns the row's mean and inverse standard deviation.
template <class T, class S>
NormStatistics layer_norm_row(const T* x, T* y, int64_t n, const S* scale, int64_t scale_step, const S* bias,
                              int64_t bias_step, float epsilon, bool rms) {
  float mean = 0;
  if (!rms) {
#pragma omp simd reduction(+ : mean)
    for (int64_t k = 0; k < n; ++k) mean += x[k];
    mean /= n;
  }
  float var = 0;
#pragma omp simd reduction(+ : var)
  for (int64_t k = 0; k < n; ++k) {
    const float d = x[k] - mean;
    var += d * d;
  }
  const float inv = 1.0f / std::sqrt(var / n + epsilon);
  for (int64_t k = 0; k < n; ++k) {
    float v = (x[k] - mean) * inv;
    if (scale) v = v * scale[k * scale_step];
    if (bias) v = v + bias[k * bias_step];
    y[k] = (T)v;
  }
  return {mean, inv};
}

// LpNormalization (p = 1 or 2) of one row, in double; a zero norm gives zeros.
template <class T>
void lp_normalize_row(const T* x, T* y, int64_t n, int64_t stride, bool l1) {
  double norm = 0;
  for (int64_t k = 0; k < n; ++k) {
    const double v = x[k * stride];
    norm += l1 ? std::fabs(v) : v * v;
  }
  norm = l1 ? norm : std::sqrt(norm);
  for (int64_t k = 0; k < n; ++k) y[k * stride] = (T)(norm == 0 ? 0.0 : x[k * stride] / norm);
}

// GlobalAveragePool (kind 0), GlobalMaxPool (1, NaN as ReduceMax) and GlobalLpPool (2, in double) of one plane.
template <class T>
T global_pool(const T* x, int64_t n, int kind, double p) {
  if (kind == 2) {
    double sum = 0;
    for (int64_t k = 0; k < n; ++k) sum += std::pow(std::abs((double)x[k]), p);
    return (T)std::pow(sum, 1.0 / p);
  }
  if (kind == 1) {
    T best = lowest_or_minus_infinity<T>();
    for (int64_t k = 0; k < n; ++k) best = (x[k] > best || x[k] != x[k]) ? x[k] : best;
    return best;
  }
  T sum = 0;
  for (int64_t k = 0; k < n; ++k) sum += x[k];
  return sum / (T)n;
}

// InstanceNormalization / GroupNormalization of group `group` of sample `sample`: its channels / groups adjacent
// channels x `spatial` positions, statistics in double, then per channel scale and bias.
template <class T>
void group_norm(const T* x, const T* scale, const T* bias, T* y, int64_t sample, int64_t group, int64_t channels,
                int64_t groups, int64_t spatial, double epsilon) {
  const int64_t per_group = channels / groups, n = per_group * spatial;
  const int64_t base = (sample * channels + group * per_group) * spatial;
  double mean = 0;
  for (int64_t k = 0; k < n; ++k) mean += x[base + k];
  mean /= n;
  double var = 0;
  for (int64_t k = 0; k < n; ++k) {
    const double d = x[base + k] - mean;
    var += d * d;
  }
  const double inv = 1.0 / std::sqrt(var / n + epsilon);
  for (int64_t k = 0; k < n; ++k) {
    const int64_t c = group * per_group + k / spatial;
    y[base + k] = (T)((x[base + k] - mean) * inv * scale[c] + bias[c]);
  }
}

// MeanVarianceNormalization over the axes not in `kept` (rank <= 8): two passes, sums and sums of squares per kept
// index in double, then (x - mean) / (std + 1e-9).
template <class T>
void mean_variance_normalization(const T* x, T* y, int rank, const int64_t* shape, const bool* kept) {
  int64_t total = 1, groups = 1;
  for (int k = 0; k < rank; ++k) total *= shape[k], groups *= kept[k] ? shape[k] : 1;
  // The kept index of element e: its coordinates on the kept axes, row-major among them.
  auto key = [&](int64_t e) {
    int64_t index = 0, stride = 1;
    for (int k = rank - 1; k >= 0; --k) {
      const int64_t coordinate = e % shape[k];
      e /= shape[k];
      if (kept[k]) index += coordinate * stride, stride *= shape[k];
    }
    return index;
  };
  const double count = (double)total / (double)groups;
  std::vector<double> sum(groups, 0.0), squares(groups, 0.0);
  for (int64_t e = 0; e < total; ++e) {
    const double v = x[e];
    sum[key(e)] += v, squares[key(e)] += v * v;
  }
  for (int64_t e = 0; e < total; ++e) {
    const int64_t g = key(e);
    const double mean = sum[g] / count;
    y[e] = (T)((x[e] - mean) / (std::sqrt(squares[g] / count - mean * mean) + 1e-9));
  }
}

// CumSum / CumProd of one row (n elements `stride` apart): inclusive or exclusive (each output the combination of
// the elements before it), forward or reverse, accumulated in the element type.
template <class T>
void cumulative_row(const T* x, T* y, int64_t n, int64_t stride, bool product, bool exclusive, bool reverse) {
  T acc = product ? (T)1 : (T)0;
  for (int64_t k = 0; k < n; ++k) {
    const int64_t at = (reverse ? n - 1 - k : k) * stride;
    if (exclusive) y[at] = acc;
    acc = product ? acc * x[at] : acc + x[at];
    if (!exclusive) y[at] = acc;
  }
}

}  // namespace sdflow_kernels
