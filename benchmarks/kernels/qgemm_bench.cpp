// Microbenchmark of codegen/kernels/qgemm.h: the int8 product with per-row dynamic activation quantization beside
// gemm.h's float32 product with a packed weight, on the layer shapes of MiniLM (m = 128 tokens; 384 x 384,
// 384 x 1536, 1536 x 384), weights whose pairs fit int16 and full-range ones, BERT-base (768 x 768) and one token (m = 1); medians of 20 runs in ms. Build and run:
//   g++ -O3 -march=native -fopenmp -I codegen/kernels benchmarks/kernels/qgemm_bench.cpp -o /tmp/qgemm_bench
//   OMP_NUM_THREADS=2 /tmp/qgemm_bench
#include <cstdio>
#include <vector>

#include "bench.h"
#include "gemm.h"
#include "qgemm.h"

int main() {
  const int64_t shapes[][3] = {{128, 384, 384}, {128, 384, 1536}, {128, 1536, 384}, {128, 768, 768},
                               {1, 768, 3072}, {1, 4096, 4096}};
  for (const auto& shape : shapes) {
    const int64_t m = shape[0], k = shape[1], n = shape[2];
    std::vector<float> a(m * k, 0.25f), b(k * n, 0.5f), y(m * n), scales(n, 0.01f);
    std::vector<int8_t> bq(k * n, 3), bfull(k * n, 100);
    std::vector<float> packed(sdflow_kernels::gemm::packed_size(k, n));
    sdflow_kernels::gemm::pack_b(b.data(), n, false, k, n, packed.data());
    std::vector<int8_t> qpacked(sdflow_kernels::qgemm::packed_bytes(k, n)), fpacked(qpacked.size());
    sdflow_kernels::qgemm::pack_b(bq.data(), n, k, n, qpacked.data());  // pairs fit int16
    sdflow_kernels::qgemm::pack_b(bfull.data(), n, k, n, fpacked.data());  // full int8 range
    const double f32 = median_ms([&] {
      sdflow_kernels::gemm::gemm_packed(m, n, k, a.data(), k, packed.data(), y.data(), n);
    }, 20, 1, 3);
    const double i8 = median_ms([&] {
      sdflow_kernels::qgemm::dynamic_quantize_matmul(m, n, k, a.data(), k, qpacked.data(), scales.data(), true,
                                                     nullptr, y.data(), n, true);
    }, 20, 1, 3);
    const double full = median_ms([&] {
      sdflow_kernels::qgemm::dynamic_quantize_matmul(m, n, k, a.data(), k, fpacked.data(), scales.data(), true,
                                                     nullptr, y.data(), n, true);
    }, 20, 1, 3);
    std::printf("%4ld x %4ld x %4ld: float32 %.3f ms, int8 %.3f ms (%.2fx), full-range int8 %.3f ms (%.2fx)\n",
                (long)m, (long)k, (long)n, f32, i8, f32 / i8, full, f32 / full);
  }
  return 0;
}
