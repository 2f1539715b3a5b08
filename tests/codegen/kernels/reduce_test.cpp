// Unit test of codegen/kernels/reduce.h against the definitions written out in double: every ReduceOp over 0-3
// strided axes (and NaN in Max/Min, an empty LogSumExp), integer accumulation, arg_reduce first and last of ties,
// Softmax/LogSoftmax rows (strided, in place), the float16-style rounded Softmax (with a stand-in type rounding to
// float16's 11 significant bits), Hardmax, LayerNorm/RMSNorm rows (per-element and single scale and bias, the
// statistics), LpNormalization, the global pools, GroupNorm and MeanVarianceNormalization.
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <algorithm>
#include <cstring>
#include <random>
#include <vector>

#include "check.h"
#include "test_data.h"
#include "reduce.h"

using namespace sdflow_kernels;

static bool near(double got, double want, double tolerance = 1e-5) {
  return got == want || std::fabs(got - want) <= tolerance * (1 + std::fabs(want));
}

// Reduces axes `axes` of a [4, 5, 6] tensor at the kept index (fixed coordinates elsewhere) with every op.
static void reduce_case(const std::vector<int>& axes) {
  const int64_t shape[3] = {4, 5, 6}, strides[3] = {30, 6, 1};
  const auto x = random_vector(120, 0.1f, 2.0f);
  int64_t sizes[3], steps[3];
  for (size_t k = 0; k < axes.size(); ++k) sizes[k] = shape[axes[k]], steps[k] = strides[axes[k]];
  const int64_t base = 1 * (std::find(axes.begin(), axes.end(), 1) == axes.end() ? 6 : 0);  // kept coordinate 1
  std::vector<double> values;
  for_each_reduced((int)axes.size(), sizes, steps, [&](int64_t at) { values.push_back(x[base + at]); });
  double sum = 0, prod = 1, top = -INFINITY, bottom = INFINITY, squares = 0, l1 = 0, exps = 0;
  for (double v : values) sum += v, prod *= v, top = std::max(top, v), bottom = std::min(bottom, v), squares += v * v, l1 += std::fabs(v);
  for (double v : values) exps += std::exp(v - top);
  const int rank = (int)axes.size();
  const float* p = x.data() + base;
  CHECK(near(reduce<ReduceOp::sum, float>(p, rank, sizes, steps), sum));
  CHECK(near(reduce<ReduceOp::mean, float>(p, rank, sizes, steps), sum / values.size()));
  CHECK(reduce<ReduceOp::max, float>(p, rank, sizes, steps) == (float)top);
  CHECK(reduce<ReduceOp::min, float>(p, rank, sizes, steps) == (float)bottom);
  CHECK(near(reduce<ReduceOp::prod, double>(p, rank, sizes, steps), prod, 1e-6));
  CHECK(near(reduce<ReduceOp::l1, float>(p, rank, sizes, steps), l1));
  CHECK(near(reduce<ReduceOp::l2, float>(p, rank, sizes, steps), std::sqrt(squares)));
  CHECK(near(reduce<ReduceOp::sum_square, float>(p, rank, sizes, steps), squares));
  CHECK(near(reduce<ReduceOp::log_sum, float>(p, rank, sizes, steps), std::log(sum)));
  CHECK(near(reduce<ReduceOp::log_sum_exp, float>(p, rank, sizes, steps), std::log(exps) + top));
}

// A stand-in for float16 in softmax_row_half: floats rounded to 11 significant bits (nearest even).
struct Rounded {
  float v;
  Rounded(float f = 0) {
    uint32_t bits;
    std::memcpy(&bits, &f, 4);
    bits = (bits + 0xFFF + ((bits >> 13) & 1)) & ~0x1FFFu;
    std::memcpy(&v, &bits, 4);
  }
  operator float() const { return v; }
};

int main() {
  reduce_case({});
  reduce_case({2});
  reduce_case({0, 2});
  reduce_case({0, 1, 2});
  {  // NaN in Max/Min is the result; an empty LogSumExp is -inf; integers accumulate as integers
    const float x[4] = {1, NAN, 3, 2};
    const int64_t size[1] = {4}, step[1] = {1}, empty[1] = {0};
    CHECK(std::isnan(reduce<ReduceOp::max, float>(x, 1, size, step)));
    CHECK(std::isnan(reduce<ReduceOp::min, float>(x, 1, size, step)));
    CHECK(std::isinf(reduce<ReduceOp::log_sum_exp, float>(x, 1, empty, step)));
    const int32_t ints[4] = {7, -2, 5, 1};
    CHECK(reduce<ReduceOp::sum, int32_t>(ints, 1, size, step) == 11);
    CHECK(reduce<ReduceOp::mean, int32_t>(ints, 1, size, step) == 2);
    CHECK(reduce<ReduceOp::max, int32_t>(ints, 1, size, step) == 7);
  }
  {  // arg_reduce: ties to the first, or the last
    const float x[6] = {1, 5, 2, 5, -1, -1};
    CHECK(arg_reduce(x, 6, 1, true, false) == 1 && arg_reduce(x, 6, 1, true, true) == 3);
    CHECK(arg_reduce(x, 6, 1, false, false) == 4 && arg_reduce(x, 6, 1, false, true) == 5);
    CHECK(arg_reduce(x, 3, 2, true, false) == 1);  // strided: 1, 2, -1
  }
  {  // Softmax and LogSoftmax over a strided row, and in place
    const auto x = random_vector(40, -5, 5);
    std::vector<float> y(40, 0.0f), z(x);
    softmax_row<float>(x.data(), y.data(), 20, 2, false);
    softmax_row<float>(z.data(), z.data(), 20, 2, true);
    double top = -INFINITY, sum = 0;
    for (int k = 0; k < 20; ++k) top = std::max(top, (double)x[2 * k]);
    for (int k = 0; k < 20; ++k) sum += std::exp(x[2 * k] - top);
    for (int k = 0; k < 20; ++k) {
      CHECK(near(y[2 * k], std::exp(x[2 * k] - top) / sum));
      CHECK(near(z[2 * k], x[2 * k] - top - std::log(sum)));
      CHECK(y[2 * k + 1] == 0.0f && z[2 * k + 1] == x[2 * k + 1]);  // untouched between the row's elements
    }
    std::vector<Rounded> h(x.begin(), x.begin() + 10), hy(10);
    softmax_row_half(h.data(), hy.data(), 10, 1);
    float htop = h[0];
    for (int k = 1; k < 10; ++k) htop = std::max<float>(htop, h[k]);
    float hsum = 0;
    for (int k = 0; k < 10; ++k) hsum += Rounded(std::exp((float)Rounded((float)h[k] - htop)));
    hsum = Rounded(hsum);
    for (int k = 0; k < 10; ++k)
      CHECK((float)hy[k] == (float)Rounded((float)Rounded(std::exp((float)Rounded((float)h[k] - htop))) / hsum));
    std::vector<float> hard(6);
    const float row[6] = {0, 3, 1, 3, 2, -1};
    hardmax_row(row, hard.data(), 6, 1);
    CHECK(hard[1] == 1 && hard[0] + hard[2] + hard[3] + hard[4] + hard[5] == 0);
  }
  {  // LayerNorm / RMSNorm rows
    const int64_t n = 37;
    const auto x = random_vector(n, -3, 3), scale = random_vector(n), bias = random_vector(n);
    for (int form = 0; form < 3; ++form) {
      std::vector<float> y(n);
      const bool rms = form == 2;
      const NormStatistics s = form == 1 ? layer_norm_row(x.data(), y.data(), n, scale.data(), 0, bias.data(), 0, 1e-5f, rms)
                                         : layer_norm_row(x.data(), y.data(), n, scale.data(), 1, rms ? (const float*)nullptr : bias.data(), 1, 1e-5f, rms);
      double mean = 0, var = 0;
      if (!rms) {
        for (float v : x) mean += v;
        mean /= n;
      }
      for (float v : x) var += (v - mean) * (v - mean);
      const double inv = 1 / std::sqrt(var / n + 1e-5);
      CHECK(near(s.mean, mean) && near(s.inv_std, inv));
      for (int64_t k = 0; k < n; ++k) {
        const double sc = form == 1 ? scale[0] : scale[k], bi = rms ? 0.0 : (form == 1 ? bias[0] : bias[k]);
        CHECK(near(y[k], (x[k] - mean) * inv * sc + bi, 1e-4));
      }
    }
  }
  {  // LpNormalization, global pools
    const auto x = random_vector(12);
    std::vector<float> y(12);
    for (bool l1 : {true, false}) {
      lp_normalize_row(x.data(), y.data(), 6, 2, l1);
      double norm = 0;
      for (int k = 0; k < 6; ++k) norm += l1 ? std::fabs(x[2 * k]) : x[2 * k] * x[2 * k];
      norm = l1 ? norm : std::sqrt(norm);
      for (int k = 0; k < 6; ++k) CHECK(near(y[2 * k], x[2 * k] / norm));
    }
    const float zeros[3] = {0, 0, 0};
    float zy[3];
    lp_normalize_row(zeros, zy, 3, 1, false);
    CHECK(zy[0] == 0 && zy[1] == 0 && zy[2] == 0);
    double sum = 0, top = -INFINITY, cubes = 0;
    for (float v : x) sum += v, top = std::max(top, (double)v), cubes += std::pow(std::fabs(v), 3.0);
    CHECK(near(global_pool(x.data(), 12, 0, 2.0), sum / 12));
    CHECK(global_pool(x.data(), 12, 1, 2.0) == (float)top);
    CHECK(near(global_pool(x.data(), 12, 2, 3.0), std::pow(cubes, 1.0 / 3)));
  }
  {  // GroupNorm: 2 samples, 6 channels in 3 groups, 5 positions
    const auto x = random_vector(2 * 6 * 5), scale = random_vector(6), bias = random_vector(6);
    std::vector<float> y(x.size());
    for (int64_t s = 0; s < 2; ++s)
      for (int64_t g = 0; g < 3; ++g) group_norm(x.data(), scale.data(), bias.data(), y.data(), s, g, 6, 3, 5, 1e-5);
    for (int64_t s = 0; s < 2; ++s)
      for (int64_t g = 0; g < 3; ++g) {
        double mean = 0, var = 0;
        for (int64_t k = 0; k < 10; ++k) mean += x[(s * 6 + 2 * g) * 5 + k];
        mean /= 10;
        for (int64_t k = 0; k < 10; ++k) var += std::pow(x[(s * 6 + 2 * g) * 5 + k] - mean, 2);
        for (int64_t k = 0; k < 10; ++k) {
          const int64_t c = 2 * g + k / 5, at = (s * 6 + 2 * g) * 5 + k;
          CHECK(near(y[at], (x[at] - mean) / std::sqrt(var / 10 + 1e-5) * scale[c] + bias[c], 1e-4));
        }
      }
  }
  {  // MeanVarianceNormalization over axes 0, 2, 3 of [2, 3, 2, 2] (per channel)
    const int64_t shape[4] = {2, 3, 2, 2};
    const bool kept[4] = {false, true, false, false};
    const auto x = random_vector(24);
    std::vector<float> y(24);
    mean_variance_normalization(x.data(), y.data(), 4, shape, kept);
    for (int64_t c = 0; c < 3; ++c) {
      double mean = 0, squares = 0;
      for (int64_t n = 0; n < 2; ++n)
        for (int64_t p = 0; p < 4; ++p) mean += x[(n * 3 + c) * 4 + p], squares += std::pow(x[(n * 3 + c) * 4 + p], 2);
      mean /= 8;
      const double sd = std::sqrt(squares / 8 - mean * mean);
      for (int64_t n = 0; n < 2; ++n)
        for (int64_t p = 0; p < 4; ++p) CHECK(near(y[(n * 3 + c) * 4 + p], (x[(n * 3 + c) * 4 + p] - mean) / (sd + 1e-9), 1e-4));
    }
  }
  {  // CumSum / CumProd: inclusive, exclusive, reverse, strided
    const float x[8] = {1, 9, 2, 9, 3, 9, 4, 9};
    float y[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    cumulative_row(x, y, 4, 2, false, false, false);
    CHECK(y[0] == 1 && y[2] == 3 && y[4] == 6 && y[6] == 10 && y[1] == 0);
    cumulative_row(x, y, 4, 2, false, true, false);
    CHECK(y[0] == 0 && y[2] == 1 && y[4] == 3 && y[6] == 6);
    cumulative_row(x, y, 4, 2, true, false, true);
    CHECK(y[6] == 4 && y[4] == 12 && y[2] == 24 && y[0] == 24);
    cumulative_row(x, y, 4, 2, true, true, true);
    CHECK(y[6] == 1 && y[4] == 4 && y[2] == 12 && y[0] == 24);
  }
  std::printf(failures ? "%d failures\n" : "ok\n", failures);
  return failures ? 1 : 0;
}
