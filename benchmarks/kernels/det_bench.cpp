// Microbenchmark of codegen/kernels/det.h: determinants of 100,000 random 4x4 matrices and of 1,000 64x64 ones.
// Medians of 10 runs, in ms. Build and run:
//   g++ -O3 -march=native -fopenmp -I codegen/kernels benchmarks/kernels/det_bench.cpp -o /tmp/det_bench
//   OMP_NUM_THREADS=2 /tmp/det_bench
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <random>
#include <vector>

#include "bench.h"
#include "det.h"

int main() {
  std::mt19937 random(0);
  std::uniform_real_distribution<float> uniform(-1.0f, 1.0f);
  const int64_t sizes[][2] = {{100000, 4}, {1000, 64}};
  for (const auto& s : sizes) {
    std::vector<float> x(s[0] * s[1] * s[1]), y(s[0]);
    for (float& v : x) v = uniform(random);
    const double ms = median_ms([&] { sdflow_kernels::det(x.data(), s[0], s[1], y.data()); });
    std::printf("%ld matrices of %ldx%ld: %.2f ms\n", (long)s[0], (long)s[1], (long)s[1], ms);
  }
  return 0;
}
