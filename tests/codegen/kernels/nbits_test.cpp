// Unit test of codegen/kernels/nbits.h (3-, 4- and 8-bit codes): the dequantized slices equal (code - zero) * scale
// bit for bit (as DequantizeLinear computes it), and products of odd sizes (n not a multiple of 32, k not of the group, one row and
// many, with a bias and accumulating) equal a double-precision product of the dequantized matrix.
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <random>
#include <vector>

#include "check.h"
#include "test_data.h"
#include "nbits.h"

using namespace sdflow_kernels;

static void check_case(int64_t m, int64_t k, int64_t n, int64_t group, bool with_zeros, bool with_bias,
                       int bits = 4) {
  std::uniform_int_distribution<int> code(0, (1 << bits) - 1);
  const int64_t g_count = nbits::groups(k, group);
  std::vector<uint8_t> codes(k * n);
  for (auto& q : codes) q = (uint8_t)code(random_engine);
  const auto scales = random_vector(g_count * n, 0.001f, 0.1f);
  std::vector<float> zeros(g_count * n);
  for (auto& z : zeros) z = (float)code(random_engine);
  std::vector<uint8_t> packed(nbits::packed_bytes(k, n, group, bits));
  nbits::pack(codes.data(), n, scales.data(), with_zeros ? zeros.data() : nullptr, k, n, group, bits,
              packed.data());
  // The dequantized weight, as DequantizeLinear defines it.
  std::vector<float> w(k * n);
  for (int64_t p = 0; p < k; ++p)
    for (int64_t j = 0; j < n; ++j)
      w[p * n + j] = ((float)codes[p * n + j] - (with_zeros ? zeros[(p / group) * n + j] : 0.0f)) *
                     scales[(p / group) * n + j];
  std::vector<float> slice(nbits::KC * nbits::PANEL);
  for (int64_t panel = 0; panel < nbits::panels(n); ++panel)
    for (int64_t k0 = 0; k0 < k; k0 += nbits::KC) {
      const int64_t kc = std::min(nbits::KC, k - k0);
      nbits::dequantize_slice(packed.data(), k, n, group, bits, panel, k0, kc, slice.data());
      for (int64_t p = 0; p < kc; ++p)
        for (int64_t j = 0; j < nbits::PANEL && panel * 32 + j < n; ++j)
          CHECK(slice[p * 32 + j] == w[(k0 + p) * n + panel * 32 + j]);
    }
  const auto a = random_vector(m * k);
  const auto bias = random_vector(n);
  for (bool accumulate : {false, true}) {
    std::vector<float> c(m * n, 0.5f);
    nbits::matmul(m, n, k, a.data(), k, packed.data(), group, bits, c.data(), n,
                  gemm::Epilogue{1.0f, accumulate, with_bias ? bias.data() : nullptr});
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j < n; ++j) {
        double expected = (accumulate ? 0.5 : 0.0) + (with_bias ? bias[j] : 0.0);
        double magnitude = std::fabs(expected);
        for (int64_t p = 0; p < k; ++p) {
          expected += (double)a[i * k + p] * w[p * n + j];
          magnitude += std::fabs((double)a[i * k + p] * w[p * n + j]);
        }
        CHECK(std::fabs(c[i * n + j] - expected) <= 1e-5 * (magnitude + 1.0));
      }
  }
}

int main() {
  check_case(1, 256, 96, 128, true, true);
  check_case(1, 200, 45, 32, false, false);
  check_case(2, 64, 33, 64, true, false);
  check_case(5, 300, 70, 128, true, true);
  check_case(70, 130, 64, 32, true, true);
  check_case(3, 1, 1, 1, true, true);
  for (int64_t m : {1, 2, 9}) check_case(m, 300, 70, 128, true, true, 8);  // 8-bit codes, one per byte
  check_case(5, 64, 33, 32, false, false, 8);
  for (int bits : {3, 4, 8}) check_case(1, 99, 40, 33, true, true, bits);  // groups of an odd row count (GEMV steps of 2)
  for (int64_t m : {1, 2, 5, 70}) check_case(m, 300, 70, 128, true, m % 2 == 1, 3);  // 3-bit codes, 12 bytes a row
  check_case(1, 200, 45, 32, false, false, 3);
  if (failures == 0) std::printf("ok\n");
  return failures != 0;
}
