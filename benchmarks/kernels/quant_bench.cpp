// Microbenchmark of codegen/kernels/quant.h: MatMulInteger of BERT-base's 128 x 768 x 768 (uint8 x int8, scalar
// zero points) and DynamicQuantizeLinear of 128 x 768 floats; medians of 10 runs in ms (the baseline issue 18's
// VNNI kernels are to beat). Build and run:
//   g++ -O3 -march=native -fopenmp -I codegen/kernels benchmarks/kernels/quant_bench.cpp -o /tmp/quant_bench
//   OMP_NUM_THREADS=2 /tmp/quant_bench
#include <cstdio>
#include <vector>

#include "bench.h"
#include "quant.h"

int main() {
  const int64_t m = 128, k = 768, n = 768;
  std::vector<uint8_t> a(m * k, 3);
  std::vector<int8_t> b(k * n, -2);
  std::vector<int32_t> y(m * n);
  const uint8_t za = 128;
  const int8_t zb = 0;
  const double ms = median_ms([&] {
    sdflow_kernels::matmul_integer(a.data(), b.data(), &za, false, &zb, false, y.data(), m, m, k, n, false);
  }, 10, 1, 2);
  std::printf("matmul integer 128 x 768 x 768: %.3f ms (%.1f GOP/s)\n", ms, 2.0 * m * k * n / ms / 1e6);
  std::vector<float> x(m * k, 0.3f);
  std::vector<uint8_t> q(m * k);
  float scale;
  uint8_t zero;
  std::printf("dynamic quantize linear, 98304 floats: %.3f ms\n", median_ms([&] {
    sdflow_kernels::dynamic_quantize_linear(x.data(), m * k, q.data(), &scale, &zero);
  }, 10, 1, 2));
  return 0;
}
