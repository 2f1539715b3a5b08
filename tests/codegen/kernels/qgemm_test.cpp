// Unit test of codegen/kernels/qgemm.h against the definition written out: A quantized as DynamicQuantizeLinear
// does (over the tensor, or over each row), the integer product summed in int64, dequantized with the per-tensor or
// per-column weight scales, plus a bias. Odd sizes (k not a multiple of 4, n not of 16, m not of 8), a row of
// zeros (scale 0), all-positive rows (zero point 0) and one row with an outlier.
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <random>
#include <vector>

#include "check.h"
#include "test_data.h"
#include "qgemm.h"

using namespace sdflow_kernels;

struct Quant {
  float scale;
  int zero;
};

static Quant reference_quant(const float* x, int64_t count) {
  float low = 0, high = 0;
  for (int64_t p = 0; p < count; ++p) low = std::min(low, x[p]), high = std::max(high, x[p]);
  const float scale = (high - low) / 255.0f;
  const float zero = scale == 0 ? 0.0f : std::min(255.0f, std::max(0.0f, std::nearbyint(-low / scale)));
  return {scale, (int)zero};
}

static int reference_code(float x, Quant q) {
  if (q.scale == 0) return 0;
  return (int)std::min(255.0f, std::max(0.0f, std::nearbyint(x / q.scale) + (float)q.zero));
}

static void check_case(int64_t m, int64_t n, int64_t k, bool per_row, bool per_column, bool with_bias, int range) {
  std::uniform_real_distribution<float> value(-2.0f, 2.0f);
  std::uniform_int_distribution<int> code(-range, range);
  std::vector<float> a(m * k), bias(n), scales(n);
  std::vector<int8_t> b(k * n);
  for (auto& x : a) x = value(random_engine);
  if (m > 2) {
    for (int64_t p = 0; p < k; ++p) a[1 * k + p] = 0.0f;                        // a row of zeros
    for (int64_t p = 0; p < k; ++p) a[2 * k + p] = std::fabs(a[2 * k + p]);     // a row >= 0
    a[0] = 40.0f;                                                               // an outlier in row 0
  }
  for (auto& x : b) x = (int8_t)std::max(-128, code(random_engine));
  if (range > 64 && k >= 2) b[0] = -128, b[n] = 100;  // a pair that leaves int16
  for (auto& x : bias) x = value(random_engine);
  for (auto& x : scales) x = 0.001f + std::fabs(value(random_engine)) * 0.01f;
  std::vector<int8_t> packed(qgemm::packed_bytes(k, n));
  qgemm::pack_b(b.data(), n, k, n, packed.data());
  CHECK(qgemm::pairs_fit_int16(packed.data(), k, n) == (range <= 64 || k * n == 1));
  std::vector<float> y(m * (n + 3), -7.0f);  // ldy = n + 3: the gap columns stay untouched
  qgemm::dynamic_quantize_matmul(m, n, k, a.data(), k, packed.data(), scales.data(), per_column,
                                 with_bias ? bias.data() : nullptr, y.data(), n + 3, per_row);
  const Quant whole = reference_quant(a.data(), m * k);
  for (int64_t i = 0; i < m; ++i) {
    const Quant q = per_row ? reference_quant(a.data() + i * k, k) : whole;
    for (int64_t j = 0; j < n; ++j) {
      int64_t acc = 0;
      for (int64_t p = 0; p < k; ++p) acc += (int64_t)(reference_code(a[i * k + p], q) - q.zero) * b[p * n + j];
      const double expected = (double)acc * q.scale * scales[per_column ? j : 0] + (with_bias ? bias[j] : 0.0);
      const double got = y[i * (n + 3) + j];
      CHECK(std::fabs(got - expected) <= 1e-5 * (std::fabs(expected) + 1.0));
    }
    for (int64_t j = n; j < n + 3; ++j) CHECK(y[i * (n + 3) + j] == -7.0f);
  }
}

int main() {
  for (bool per_row : {false, true})
    for (bool per_column : {false, true}) {
      for (int range : {128, 64}) {  // any int8 weights; weights whose pairs fit int16 (vpmaddubsw's form)
        check_case(1, 1, 1, per_row, per_column, true, range);
        check_case(3, 17, 5, per_row, per_column, false, range);
        check_case(9, 40, 13, per_row, per_column, true, range);
        check_case(70, 33, 64, per_row, per_column, true, range);
        check_case(20, 96, 768, per_row, per_column, per_column, range);
      }
    }
  {  // packing: panels of 16 columns x 4 consecutive k, the column sums after them
    const int64_t k = 6, n = 18;
    std::vector<int8_t> b(k * n);
    for (int64_t i = 0; i < k * n; ++i) b[i] = (int8_t)(i % 200 - 100);
    std::vector<int8_t> packed(qgemm::packed_bytes(k, n));
    qgemm::pack_b(b.data(), n, k, n, packed.data());
    CHECK(packed[(1 * 16 + 3) * 4 + 1] == b[5 * n + 3]);                 // k = 5, column 3
    CHECK(packed[(1 * 16 + 3) * 4 + 2] == 0);                            // k = 6: padding
    CHECK(packed[2 * 16 * 4 + (0 * 16 + 1) * 4 + 0] == b[0 * n + 17]);   // second panel, column 17
    const int32_t* sums = qgemm::column_sums(packed.data(), k, n);
    int32_t expected = 0;
    for (int64_t p = 0; p < k; ++p) expected += b[p * n + 17];
    CHECK(sums[17] == expected && sums[18] == 0);
  }
  if (failures == 0) std::printf("ok\n");
  return failures != 0;
}
