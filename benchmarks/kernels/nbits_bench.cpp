// Microbenchmark of codegen/kernels/nbits.h: the product by a 4-bit and an 8-bit weight (groups of 128) beside gemm.h's float32
// product with the same weight packed, at one row (GEMV: 4096 x 4096, past the caches; 768 x 3072, GPT-2's FFN)
// and 128 rows (768 x 768); medians of 20 runs in ms. Build and run:
//   g++ -O3 -march=native -fopenmp -I codegen/kernels benchmarks/kernels/nbits_bench.cpp -o /tmp/nbits_bench
//   OMP_NUM_THREADS=2 /tmp/nbits_bench
#include <cstdio>
#include <vector>

#include "bench.h"
#include "gemm.h"
#include "nbits.h"

int main() {
  const int64_t shapes[][3] = {{1, 4096, 4096}, {1, 768, 3072}, {1, 3072, 768}, {128, 768, 768}};
  for (const auto& shape : shapes) {
    const int64_t m = shape[0], k = shape[1], n = shape[2], group = 128;
    std::vector<float> a(m * k, 0.25f), b(k * n, 0.5f), y(m * n);
    std::vector<float> packed(sdflow_kernels::gemm::packed_size(k, n));
    sdflow_kernels::gemm::pack_b(b.data(), n, false, k, n, packed.data());
    std::vector<uint8_t> codes(k * n, 9);
    std::vector<float> scales((k / group) * n, 0.01f), zeros((k / group) * n, 8.0f);
    std::vector<uint8_t> q(sdflow_kernels::nbits::packed_bytes(k, n, group, 4));
    sdflow_kernels::nbits::pack(codes.data(), n, scales.data(), zeros.data(), k, n, group, 4, q.data());
    std::vector<uint8_t> q8(sdflow_kernels::nbits::packed_bytes(k, n, group, 8));
    sdflow_kernels::nbits::pack(codes.data(), n, scales.data(), zeros.data(), k, n, group, 8, q8.data());
    const double f32 = median_ms([&] {
      sdflow_kernels::gemm::gemm_packed(m, n, k, a.data(), k, packed.data(), y.data(), n);
    }, 20, m == 1 ? 5 : 1, 3);
    const double q4 = median_ms([&] {
      sdflow_kernels::nbits::matmul(m, n, k, a.data(), k, q.data(), group, 4, y.data(), n);
    }, 20, m == 1 ? 5 : 1, 3);
    std::vector<uint8_t> codes3(k * n, 5);
    std::vector<uint8_t> q3(sdflow_kernels::nbits::packed_bytes(k, n, group, 3));
    sdflow_kernels::nbits::pack(codes3.data(), n, scales.data(), zeros.data(), k, n, group, 3, q3.data());
    const double q3ms = median_ms([&] {
      sdflow_kernels::nbits::matmul(m, n, k, a.data(), k, q3.data(), group, 3, y.data(), n);
    }, 20, m == 1 ? 5 : 1, 3);
    const double q8ms = median_ms([&] {
      sdflow_kernels::nbits::matmul(m, n, k, a.data(), k, q8.data(), group, 8, y.data(), n);
    }, 20, m == 1 ? 5 : 1, 3);
    std::printf("%4ld x %4ld x %4ld: float32 %.3f ms, 4-bit g128 %.3f ms (%.2fx), 3-bit %.3f ms (%.2fx), "
                "8-bit %.3f ms (%.2fx)\n", (long)m, (long)k, (long)n, f32, q4, f32 / q4, q3ms, f32 / q3ms, q8ms,
                f32 / q8ms);
  }
  return 0;
}
