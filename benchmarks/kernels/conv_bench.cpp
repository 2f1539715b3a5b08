// Microbenchmark of codegen/kernels/conv.h: the three depthwise forms on MobileNetV2's depthwise layers (batch 1,
// 3x3, bias) and on MNASNet's small late planes (batch 2, 5x5 and 3x3 windows), max_pool_plane on ResNet-18's 3x3 stride-2 MaxPool and average_pool_plane on a 3x3 stride-1 one (the
// window loop of pool.h: benchmarks/kernels/pool_bench.cpp); medians of 20 runs in ms. Build and run:
//   g++ -O3 -march=native -fopenmp -I codegen/kernels benchmarks/kernels/conv_bench.cpp -o /tmp/conv_bench
//   OMP_NUM_THREADS=2 /tmp/conv_bench
#include <cstdio>
#include <vector>

#include "bench.h"
#include "conv.h"

int main() {
  using sdflow_kernels::ConvGeometry;
  using sdflow_kernels::NoEpilogue;
  // batch, channels, size, window, stride
  const int64_t layers[][5] = {{1, 32, 112, 3, 1}, {1, 96, 112, 3, 2}, {1, 144, 56, 3, 1}, {1, 144, 56, 3, 2},
                               {1, 192, 28, 3, 1},  {1, 384, 14, 3, 1}, {1, 576, 14, 3, 2}, {1, 960, 7, 3, 1},
                               {2, 72, 8, 5, 1},    {2, 240, 4, 5, 1},  {2, 288, 4, 5, 2},  {2, 576, 2, 5, 1},
                               {2, 576, 2, 3, 1},   {1, 960, 7, 5, 1},  {1, 672, 14, 5, 2}, {1, 480, 14, 3, 1}};
  for (const auto& l : layers) {
    const int64_t n = l[0], c = l[1], size = l[2], k = l[3], s = l[4], pad = k / 2, out = (size + 2 * pad - k) / s + 1;
    const ConvGeometry g{n, c, size, size, c, c, k, k, s, s, 1, 1, pad, pad, pad, pad, out, out};
    std::vector<float> x(n * c * size * size, 0.5f), w(c * k * k, 0.25f), b(c, 0.1f), y(n * c * out * out);
    const double rows = median_ms([&] {
      sdflow_kernels::conv_depthwise_rows(x.data(), w.data(), b.data(), y.data(), g, NoEpilogue{});
    }, 20, 1, 3);
    const double planes = median_ms([&] {
      sdflow_kernels::conv_depthwise_planes(x.data(), w.data(), b.data(), y.data(), g, NoEpilogue{});
    }, 20, 1, 3);
    const double channels = median_ms([&] {
      sdflow_kernels::conv_depthwise_channels(x.data(), w.data(), b.data(), y.data(), g, NoEpilogue{});
    }, 20, 1, 3);
    std::printf("depthwise %ldx%ld stride %ld, %ldx%ld channels over %ldx%ld: rows %.4f ms, planes %.4f ms, "
                "channels %.4f ms\n", (long)k, (long)k, (long)s, (long)n, (long)c, (long)size, (long)size, rows,
                planes, channels);
  }
  const ConvGeometry pool{1, 64, 112, 112, 64, 1, 3, 3, 2, 2, 1, 1, 1, 1, 1, 1, 56, 56};
  std::vector<float> x(64 * 112 * 112, 1.0f), y(64 * 56 * 56);
  const double ms = median_ms([&] {
#pragma omp parallel for
    for (int64_t c = 0; c < 64; ++c) sdflow_kernels::max_pool_plane(x.data() + c * 112 * 112, y.data() + c * 56 * 56, pool);
  }, 20, 1, 3);
  std::printf("max pool 3x3 stride 2, 64 planes of 112x112: %.3f ms\n", ms);
  const ConvGeometry average{1, 64, 56, 56, 64, 1, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 56, 56};
  std::vector<float> a(64 * 56 * 56, 1.0f), b(64 * 56 * 56);
  std::printf("average pool 3x3 stride 1 pads 1, 64 planes of 56x56: %.3f ms\n", median_ms([&] {
#pragma omp parallel for
    for (int64_t c = 0; c < 64; ++c)
      sdflow_kernels::average_pool_plane(a.data() + c * 56 * 56, b.data() + c * 56 * 56, average, false);
  }, 20, 1, 3));
  return 0;
}
