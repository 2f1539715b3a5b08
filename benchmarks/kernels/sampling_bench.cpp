// Microbenchmark of codegen/kernels/sampling.h: Resize of a [1, 96, 80, 80] feature map to 160x160 (a detector's
// FPN upsampling, as PaddleOCR's DBNet does) in nearest (copies) and linear (weighted passes) modes, and
// GridSample (linear, zeros) of [1, 32, 64, 64] at 64x64 points; medians of 20 runs in ms. Build and run:
//   g++ -O3 -march=native -fopenmp -I codegen/kernels benchmarks/kernels/sampling_bench.cpp -o /tmp/sampling_bench
//   OMP_NUM_THREADS=2 /tmp/sampling_bench
#include <cstdio>
#include <vector>

#include "bench.h"
#include "sampling.h"

int main() {
  using namespace sdflow_kernels;
  const int64_t c = 96, h = 80, w = 80;
  std::vector<float> x(c * h * w, 0.5f), y(c * 4 * h * w);
  const ResizeAxis axes[2] = {{c, h, 2 * h, w, 2.0, 0, 1}, {c * 2 * h, w, 2 * w, 1, 2.0, 0, 1}};
  const ResizeMode nearest{0, 4, 2, false, false, -0.75, 0.0}, linear{1, 0, 0, false, false, -0.75, 0.0};
  std::printf("resize nearest 96x80x80 -> 160x160: %.3f ms\n",
              median_ms([&] { resize(x.data(), y.data(), nearest, axes, 2); }, 20, 1, 3));
  std::printf("resize linear  96x80x80 -> 160x160: %.3f ms\n",
              median_ms([&] { resize(x.data(), y.data(), linear, axes, 2); }, 20, 1, 3));
  std::vector<float> image(32 * 64 * 64, 1.0f), grid(64 * 64 * 2), out(32 * 64 * 64);
  for (size_t i = 0; i < grid.size(); ++i) grid[i] = -1.0f + 2.0f * float(i % 128) / 127.0f;
  const GridSampleGeometry g{2, 1, 32, 64 * 64, {64, 64, 1}, 1, 0, false};
  std::printf("grid sample linear 32x64x64 at 64x64 points: %.3f ms\n",
              median_ms([&] { grid_sample(image.data(), grid.data(), out.data(), g); }, 20, 1, 3));
  return 0;
}
