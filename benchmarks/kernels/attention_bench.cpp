// Microbenchmark of codegen/kernels/attention.h: self-attention of BERT-base's shape (12 heads of 64, batch 1) at
// 128 and 512 tokens with an additive key mask, by the float32 kernel (attention_float) and the general one
// (attention, double accumulation); medians of 10 runs in ms. Build and run:
//   g++ -O3 -march=native -fopenmp -fno-math-errno -fno-trapping-math -fno-signed-zeros -I codegen/kernels
//       benchmarks/kernels/attention_bench.cpp -o /tmp/attention_bench && OMP_NUM_THREADS=2 /tmp/attention_bench
#include <cstdio>
#include <vector>

#include "attention.h"
#include "bench.h"

int main() {
  using sdflow_kernels::AttentionGeometry;
  for (int64_t tokens : {128, 512}) {
    const int64_t heads = 12, d = 64;
    const AttentionGeometry g{1, heads, heads, tokens, tokens, 0, d, d, false, 0.125, 0.0, false, -1, -1, 0,
                              {0, 0, 0, 1}, tokens};
    std::vector<float> q(heads * tokens * d, 0.1f), k(q), v(q), y(q.size()), mask(tokens, 0.0f);
    const double fast = median_ms([&] {
      sdflow_kernels::attention_float(q.data(), k.data(), v.data(), mask.data(), y.data(), g);
    }, 10, 1, 2);
    const double general = median_ms([&] {
      sdflow_kernels::attention(q.data(), k.data(), v.data(), mask.data(), (const float*)nullptr,
                                (const float*)nullptr, (const int64_t*)nullptr, y.data(), (float*)nullptr,
                                (float*)nullptr, (float*)nullptr, g);
    }, 10, 1, 1);
    const double flop = 4.0 * heads * tokens * tokens * d;
    std::printf("%ld tokens: attention_float %.3f ms (%.1f GFLOP/s), attention %.3f ms\n", (long)tokens, fast,
                flop / fast / 1e6, general);
  }
  return 0;
}
