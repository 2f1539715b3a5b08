// Microbenchmark of codegen/kernels/dynamic_ops.h at detector sizes: NonMaxSuppression over 1000 and 5000 candidate
// boxes (RetinaNet/FCOS keep at most 1000 per level), NonZero over a 1M-element score mask. Medians of 10 runs, ms.
//   g++ -O3 -march=native -I codegen/kernels benchmarks/kernels/dynamic_ops_bench.cpp -o /tmp/dynamic_ops_bench
//   /tmp/dynamic_ops_bench
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <functional>
#include <random>
#include <vector>

#include "bench.h"
#include "dynamic_ops.h"

int main() {
  std::mt19937 random(0);
  std::uniform_real_distribution<float> uniform(0.0f, 1.0f);
  for (int64_t n : {int64_t(1000), int64_t(5000)}) {
    std::vector<float> boxes(n * 4), scores(n);
    for (int64_t i = 0; i < n; ++i) {
      const float y = uniform(random) * 300, x = uniform(random) * 300;
      boxes[i * 4] = y, boxes[i * 4 + 1] = x, boxes[i * 4 + 2] = y + 10 + uniform(random) * 50;
      boxes[i * 4 + 3] = x + 10 + uniform(random) * 50, scores[i] = uniform(random);
    }
    std::vector<int64_t> selected(n * 3);
    int64_t kept = 0;
    const double ms = median_ms([&] {
      kept = sdflow_kernels::non_max_suppression(boxes.data(), scores.data(), 1, 1, n, n, 0.5f, 1, 0.05f, 0,
                                                 selected.data());
    });
    std::printf("NonMaxSuppression, %ld boxes (%ld kept): %.3f ms\n", (long)n, (long)kept, ms);
  }
  std::vector<float> mask(1 << 20);
  for (float& v : mask) v = uniform(random) > 0.9f ? 1.0f : 0.0f;
  const int64_t shape[2] = {1024, 1024};
  std::vector<int64_t> where(2 * mask.size());
  const double ms = median_ms([&] {
    const int64_t count = sdflow_kernels::nonzero_count(mask.data(), int64_t(mask.size()));
    sdflow_kernels::nonzero_fill(mask.data(), shape, 2, count, where.data());
  });
  std::printf("NonZero, 1M elements (10%% set): %.3f ms\n", ms);
  return 0;
}
