// Microbenchmark of codegen/kernels/reduce.h: Softmax over BERT-base's attention scores (12 x 128 rows of 128),
// LayerNorm over 128 rows of 768 with scale and bias, and ReduceMean over the last axis of [128, 768] (rows
// over the threads, as lowering maps them); medians of 20 runs in ms. Build and run:
//   g++ -O3 -march=native -fopenmp -fno-math-errno -fno-trapping-math -fno-signed-zeros -I codegen/kernels
//       benchmarks/kernels/reduce_bench.cpp -o /tmp/reduce_bench && OMP_NUM_THREADS=2 /tmp/reduce_bench
#include <cstdio>
#include <vector>

#include "bench.h"
#include "reduce.h"

int main() {
  using namespace sdflow_kernels;
  std::vector<float> scores(12 * 128 * 128, 0.25f), out(scores.size());
  std::printf("softmax, 1536 rows of 128: %.3f ms\n", median_ms([&] {
#pragma omp parallel for
    for (int64_t r = 0; r < 12 * 128; ++r) softmax_row<float>(scores.data() + r * 128, out.data() + r * 128, 128, 1, false);
  }, 20, 1, 3));
  std::vector<float> x(128 * 768, 0.5f), y(x.size()), scale(768, 1.0f), bias(768, 0.0f), mean(128);
  std::printf("layer norm, 128 rows of 768: %.3f ms\n", median_ms([&] {
#pragma omp parallel for
    for (int64_t r = 0; r < 128; ++r)
      layer_norm_row(x.data() + r * 768, y.data() + r * 768, 768, scale.data(), 1, bias.data(), 1, 1e-12f, false);
  }, 20, 1, 3));
  const int64_t size[1] = {768}, step[1] = {1};
  std::printf("reduce mean, 128 rows of 768: %.3f ms\n", median_ms([&] {
#pragma omp parallel for
    for (int64_t r = 0; r < 128; ++r) mean[r] = reduce<ReduceOp::mean, float>(x.data() + r * 768, 1, size, step);
  }, 20, 1, 3));
  return 0;
}
