// Microbenchmark of codegen/kernels/vmath.h: exp_f and erf_f over 1M floats in a vectorised loop against the C
// library's expf and erff in the same loop (one thread); ns per element. Built with the math flags sdflow's
// generated code has (codegen/cache.cpu_args; without -fno-trapping-math the selects do not vectorise):
//   g++ -O3 -march=native -fopenmp -fno-math-errno -fno-trapping-math -fno-signed-zeros -I codegen/kernels
//       benchmarks/kernels/vmath_bench.cpp -o /tmp/vmath_bench && /tmp/vmath_bench
#include <cmath>
#include <cstdio>
#include <vector>

#include "bench.h"
#include "vmath.h"

int main() {
  const int n = 1 << 20;
  std::vector<float> x(n), y(n);
  for (int i = 0; i < n; ++i) x[i] = -10.0f + 20.0f * float(i) / n;
  auto report = [&](const char* what, double ms) { std::printf("%-6s %.3f ns/element\n", what, ms * 1e6 / n); };
  report("exp_f", median_ms([&] {
#pragma omp simd
    for (int i = 0; i < n; ++i) y[i] = sdflow_kernels::exp_f(x[i]);
  }, 20, 1, 2));
  report("expf", median_ms([&] {
    for (int i = 0; i < n; ++i) y[i] = std::exp(x[i]);
  }, 20, 1, 2));
  report("erf_f", median_ms([&] {
#pragma omp simd
    for (int i = 0; i < n; ++i) y[i] = sdflow_kernels::erf_f(x[i]);
  }, 20, 1, 2));
  report("erff", median_ms([&] {
    for (int i = 0; i < n; ++i) y[i] = std::erf(x[i]);
  }, 20, 1, 2));
  return 0;
}
