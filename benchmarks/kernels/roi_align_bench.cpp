// Microbenchmark of codegen/kernels/roi_align.h on Faster R-CNN's box-head pooling (1000 proposals over a 256-channel
// FPN level, 7x7 bins, sampling ratio 2 and adaptive): the median of 10 runs, in ms and samples/ns. Build and run:
//   g++ -O3 -march=native -fopenmp -I codegen/kernels benchmarks/kernels/roi_align_bench.cpp -o /tmp/roi_align_bench
//   OMP_NUM_THREADS=2 /tmp/roi_align_bench
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <random>
#include <vector>

#include "bench.h"
#include "roi_align.h"

int main() {
  const int64_t rois = 1000, channels = 256, h = 32, w = 32;
  std::mt19937 random(0);
  std::uniform_real_distribution<float> corner(0.0f, 100.0f), size(8.0f, 28.0f);
  std::vector<float> x(channels * h * w, 0.5f), boxes(rois * 4), y(rois * channels * 49);
  for (int64_t r = 0; r < rois; ++r) {
    boxes[r * 4] = corner(random), boxes[r * 4 + 1] = corner(random);
    boxes[r * 4 + 2] = boxes[r * 4] + size(random), boxes[r * 4 + 3] = boxes[r * 4 + 1] + size(random);
  }
  std::vector<int64_t> batch(rois, 0);
  for (int64_t ratio : {int64_t(2), int64_t(0)}) {
    const sdflow_kernels::RoiAlignGeometry g{rois, channels, h, w, 7, 7, ratio, 0.25f, false, false};
    const double ms = median_ms([&] { sdflow_kernels::roi_align(x.data(), boxes.data(), batch.data(), g, y.data()); });
    std::printf("1000 rois x 256 channels, 7x7 bins, sampling ratio %ld: %.2f ms\n", (long)ratio, ms);
  }
  return 0;
}
