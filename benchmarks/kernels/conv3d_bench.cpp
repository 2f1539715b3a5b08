// Microbenchmark of codegen/kernels/conv3d.h on R(2+1)D-18's layer shapes at 8 frames of 112x112 (batch 1):
// the median of 10 runs per layer, in ms and GFLOP/s. Build and run:
//   g++ -O3 -march=native -fopenmp -I codegen/kernels benchmarks/kernels/conv3d_bench.cpp -o /tmp/conv3d_bench
//   OMP_NUM_THREADS=2 /tmp/conv3d_bench
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <vector>

#include "bench.h"
#include "conv3d.h"

int main() {
  using sdflow_kernels::Conv3dGeometry;
  // (c, d, h, w) -> m with kernel (kd, kh, kw), padding to keep the size, stride 1
  const int64_t layers[][8] = {{64, 8, 56, 56, 144, 1, 3, 3}, {144, 8, 56, 56, 64, 3, 1, 1},
                               {128, 4, 28, 28, 230, 1, 3, 3}, {230, 4, 28, 28, 128, 3, 1, 1}};
  for (const auto& l : layers) {
    Conv3dGeometry g{1, l[0], l[1], l[2], l[3], l[4], 1, l[5], l[6], l[7], 1, 1, 1, 1, 1, 1,
                     l[5] / 2, l[6] / 2, l[7] / 2, l[1], l[2], l[3]};
    std::vector<float> x(g.c * g.d * g.h * g.w, 1.0f), w(g.m * g.c * g.kd * g.kh * g.kw, 0.5f), y(g.m * g.d * g.h * g.w);
    const double ms = median_ms([&] { sdflow_kernels::conv3d(x.data(), w.data(), nullptr, y.data(), g); });
    const double flop = 2.0 * g.m * g.od * g.oh * g.ow * g.c * g.kd * g.kh * g.kw;
    std::printf("c=%ld m=%ld kernel %ldx%ldx%ld over %ldx%ldx%ld: %.2f ms, %.1f GFLOP/s\n", (long)g.c, (long)g.m,
                (long)g.kd, (long)g.kh, (long)g.kw, (long)g.d, (long)g.h, (long)g.w, ms, flop / ms / 1e6);
  }
  return 0;
}
