// Microbenchmark of codegen/kernels/pool.h: AveragePool 3x3 stride 1 pads 1 and MaxPool 3x3 stride 2 with indices
// over [1, 64, 56, 56] (planes over the threads, as lowering maps them), and LRN of AlexNet's first layer
// ([1, 96, 55, 55], size 5); medians of 20 runs in ms. Build and run:
//   g++ -O3 -march=native -fopenmp -I codegen/kernels benchmarks/kernels/pool_bench.cpp -o /tmp/pool_bench
//   OMP_NUM_THREADS=2 /tmp/pool_bench
#include <cstdio>
#include <vector>

#include "bench.h"
#include "pool.h"

int main() {
  using sdflow_kernels::PoolGeometry;
  const int64_t planes = 64, size = 56;
  std::vector<float> x(planes * size * size, 0.5f), y(planes * size * size);
  std::vector<int64_t> indices(planes * size * size);
  const PoolGeometry average{1, size, size, 1, 3, 3, 1, 1, 1, 1, 1, 1, 0, 1, 1, 0, 1, 1, 1, size, size, 1, true, 2.0,
                             false};
  const PoolGeometry max{1, size, size, 1, 3, 3, 1, 2, 2, 1, 1, 1, 0, 1, 1, 0, 1, 1, 1, 28, 28, 0, false, 2.0, false};
  std::printf("average pool 3x3, 64 planes of 56x56: %.3f ms\n", median_ms([&] {
#pragma omp parallel for
    for (int64_t p = 0; p < planes; ++p)
      sdflow_kernels::pool_plane(x.data() + p * size * size, y.data() + p * size * size, (int64_t*)nullptr, p, average);
  }, 20, 1, 3));
  std::printf("max pool 3x3 stride 2 with indices, 64 planes of 56x56: %.3f ms\n", median_ms([&] {
#pragma omp parallel for
    for (int64_t p = 0; p < planes; ++p)
      sdflow_kernels::pool_plane(x.data() + p * size * size, y.data() + p * 28 * 28, indices.data() + p * 28 * 28, p,
                                 max);
  }, 20, 1, 3));
  std::vector<float> a(96 * 55 * 55, 0.5f), b(a.size());
  std::printf("LRN size 5, [1, 96, 55, 55]: %.3f ms\n", median_ms([&] {
    sdflow_kernels::lrn(a.data(), b.data(), 1, 96, 55 * 55, 5, 1e-4, 0.75, 1.0);
  }, 20, 1, 3));
  return 0;
}
