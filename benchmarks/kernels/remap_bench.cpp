// Microbenchmark of codegen/kernels/remap.h: TopK (k = 100) of 80 rows of 8400 scores (a YOLO head's
// candidates), ScatterElements of 100,000 updates into 1M floats, ScatterND of 1,000 rows of 256; medians of 10
// runs in ms. Build and run:
//   g++ -O3 -march=native -fopenmp -I codegen/kernels benchmarks/kernels/remap_bench.cpp -o /tmp/remap_bench
//   /tmp/remap_bench
#include <cstdio>
#include <vector>

#include "bench.h"
#include "remap.h"

int main() {
  using namespace sdflow_kernels;
  std::vector<float> scores(80 * 8400);
  for (size_t i = 0; i < scores.size(); ++i) scores[i] = float((i * 2654435761u) % 10007);
  std::vector<float> values(80 * 100);
  std::vector<int64_t> indices(80 * 100);
  std::printf("top-k 100 of 80 rows of 8400: %.3f ms\n", median_ms([&] {
    for (int64_t r = 0; r < 80; ++r)
      top_k_row(scores.data() + r * 8400, 8400, 1, 100, true, values.data() + r * 100, indices.data() + r * 100, 1);
  }, 10, 1, 1));
  const int64_t shape[1] = {1 << 20}, index_shape[1] = {100000};
  std::vector<float> data(1 << 20, 1.0f), y(1 << 20), updates(100000, 2.0f);
  std::vector<int64_t> where(100000);
  for (int64_t i = 0; i < 100000; ++i) where[i] = (i * 7919) % (1 << 20);
  std::printf("scatter elements, 100000 into 1M: %.3f ms\n", median_ms([&] {
    scatter_elements(data.data(), where.data(), updates.data(), y.data(), 1, shape, index_shape, 0,
                     ScatterReduction::add);
  }, 10, 1, 1));
  const int64_t table[2] = {4096, 256};
  std::vector<float> rows(4096 * 256, 0.0f), out(rows.size()), patch(1000 * 256, 1.0f);
  std::vector<int64_t> row_index(1000);
  for (int64_t i = 0; i < 1000; ++i) row_index[i] = (i * 13) % 4096;
  std::printf("scatter nd, 1000 rows of 256 into 4096: %.3f ms\n", median_ms([&] {
    scatter_nd(rows.data(), row_index.data(), patch.data(), out.data(), 2, table, 1, 1000, ScatterReduction::none);
  }, 10, 1, 1));
  return 0;
}
