// Unit test of codegen/kernels/quant.h against the definitions written out: DynamicQuantizeLinear's scale, zero
// point and values (an all-positive input still maps 0 exactly; an all-zero one gives scale 0), MatMulInteger
// with no, per-tensor, per-row and per-column zero points and a batched B, ConvInteger (strided, padded, grouped,
// per-channel weight zero points) against a direct int64 sum.
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <random>
#include <vector>

#include "check.h"
#include "test_data.h"
#include "quant.h"

using namespace sdflow_kernels;

template <class T>
static std::vector<T> random_ints(int64_t size, int lo, int hi) {
  std::uniform_int_distribution<int> value(lo, hi);
  std::vector<T> v(size);
  for (auto& x : v) x = (T)value(random_engine);
  return v;
}

int main() {
  {
    const std::vector<float> x = {0.5f, 2.0f, 1.25f, 3.0f};
    std::vector<uint8_t> y(4);
    float scale;
    uint8_t zero;
    dynamic_quantize_linear(x.data(), 4, y.data(), &scale, &zero);
    CHECK(scale == 3.0f / 255.0f && zero == 0);
    for (int k = 0; k < 4; ++k) CHECK(y[k] == (uint8_t)std::nearbyint(x[k] / scale));
    const std::vector<float> mixed = {-1.0f, 0.0f, 2.0f};
    dynamic_quantize_linear(mixed.data(), 3, y.data(), &scale, &zero);
    CHECK(zero == (uint8_t)std::nearbyint(1.0f / scale) && y[1] == zero && y[0] == 0 && y[2] == 255);
    const std::vector<float> zeros = {0.0f, 0.0f};
    dynamic_quantize_linear(zeros.data(), 2, y.data(), &scale, &zero);
    CHECK(scale == 0.0f && zero == 0 && y[0] == 0 && y[1] == 0);
  }
  {  // MatMulInteger: 2 batches of 3 x 5 times 5 x 4 (B batched), zero points of every kind
    const int64_t m = 3, k = 5, n = 4;
    const auto a = random_ints<uint8_t>(2 * m * k, 0, 255);
    const auto b = random_ints<int8_t>(2 * k * n, -128, 127);
    const auto za = random_ints<uint8_t>(m, 0, 255);
    const auto zb = random_ints<int8_t>(n, -128, 127);
    for (int variant = 0; variant < 3; ++variant) {
      std::vector<int32_t> y(2 * m * n);
      const uint8_t* a_zero = variant ? za.data() : nullptr;
      const int8_t* b_zero = variant ? zb.data() : nullptr;
      const bool per = variant == 2;
      matmul_integer(a.data(), b.data(), a_zero, per, b_zero, per, y.data(), 2 * m, m, k, n, true);
      for (int64_t r = 0; r < 2 * m; ++r)
        for (int64_t j = 0; j < n; ++j) {
          int64_t sum = 0;
          for (int64_t p = 0; p < k; ++p)
            sum += ((int64_t)a[r * k + p] - (a_zero ? a_zero[per ? r % m : 0] : 0)) *
                   ((int64_t)b[(r / m) * k * n + p * n + j] - (b_zero ? b_zero[per ? j : 0] : 0));
          CHECK(y[r * n + j] == sum);
        }
    }
  }
  {  // ConvInteger: 2 groups, stride 2, pads 1, per-channel weight zero points
    const ConvGeometry g{2, 4, 7, 6, 6, 2, 3, 3, 2, 2, 1, 1, 1, 1, 1, 1, 4, 3};
    const auto x = random_ints<uint8_t>(g.n * g.c * g.h * g.w, 0, 255);
    const auto w = random_ints<int8_t>(g.m * 2 * 9, -128, 127);
    const uint8_t x_zero = 17;
    const auto w_zero = random_ints<int8_t>(g.m, -5, 5);
    std::vector<int32_t> y(g.n * g.m * g.oh * g.ow);
    conv_integer(x.data(), w.data(), &x_zero, w_zero.data(), true, y.data(), g);
    for (int64_t n = 0; n < g.n; ++n)
      for (int64_t m = 0; m < g.m; ++m)
        for (int64_t oh = 0; oh < g.oh; ++oh)
          for (int64_t ow = 0; ow < g.ow; ++ow) {
            int64_t sum = 0;
            for (int64_t c = 0; c < 2; ++c)
              for (int64_t i = 0; i < 3; ++i)
                for (int64_t j = 0; j < 3; ++j) {
                  const int64_t ih = oh * 2 - 1 + i, iw = ow * 2 - 1 + j;
                  const int64_t xv = ih >= 0 && ih < g.h && iw >= 0 && iw < g.w
                                         ? (int64_t)x[((n * 4 + (m / 3) * 2 + c) * g.h + ih) * g.w + iw] - x_zero : 0;
                  sum += xv * ((int64_t)w[((m * 2 + c) * 3 + i) * 3 + j] - w_zero[m]);
                }
            CHECK(y[((n * g.m + m) * g.oh + oh) * g.ow + ow] == sum);
          }
  }
  std::printf(failures ? "%d failures\n" : "ok\n", failures);
  return failures ? 1 : 0;
}
