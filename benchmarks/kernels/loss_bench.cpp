// Microbenchmark of codegen/kernels/loss.h: SoftmaxCrossEntropyLoss (mean) of 512 tokens over a 32,000-word
// vocabulary, with the log-probabilities; median of 10 runs in ms. Build and run:
//   g++ -O3 -march=native -fopenmp -I codegen/kernels benchmarks/kernels/loss_bench.cpp -o /tmp/loss_bench
//   /tmp/loss_bench
#include <cstdio>
#include <vector>

#include "bench.h"
#include "loss.h"

int main() {
  const int64_t n = 512, c = 32000;
  std::vector<float> x(n * c, 0.01f), log_prob(n * c), y(1);
  std::vector<int64_t> target(n);
  for (int64_t i = 0; i < n; ++i) target[i] = (i * 37) % c;
  std::printf("softmax cross-entropy, 512 x 32000: %.3f ms\n", median_ms([&] {
    sdflow_kernels::loss(x.data(), target.data(), (const float*)nullptr, y.data(), log_prob.data(), n, c, 1, true,
                         false, 0, sdflow_kernels::LossReduction::mean);
  }, 10, 1, 1));
  return 0;
}
