// Microbenchmark of codegen/kernels/conv_direct.h on ResNet-18's 3x3 layers (conv_direct and conv_winograd, and
// conv_direct_channels on the 7x7 ones), MobileNetV2's 1x1 layers and fused 1x1 + depthwise blocks (batch 1,
// bias) and 1x1 layers over small planes in both forms; medians of 10 runs, ms and GFLOP/s. Build and run:
//   g++ -O3 -march=native -fopenmp -I codegen/kernels benchmarks/kernels/conv_direct_bench.cpp -o /tmp/conv_direct_bench
//   OMP_NUM_THREADS=2 /tmp/conv_direct_bench
#include <cstdio>
#include <vector>

#include "bench.h"
#include "conv_direct.h"

using sdflow_kernels::ConvGeometry;
using sdflow_kernels::NoEpilogue;

// 64-byte aligned floats (the kernels' aligned weight loads), all `value`.
static float* aligned_floats(std::vector<float>& storage, int64_t size, float value) {
  storage.assign(size + 16, value);
  return storage.data() + (64 - reinterpret_cast<uintptr_t>(storage.data()) % 64) % 64 / 4;
}

static void report(const char* what, const ConvGeometry& g, double ms) {
  const double flop = 2.0 * g.m * g.oh * g.ow * g.c * g.kh * g.kw;
  std::printf("%-9s %ldx%ld stride %ld, %ld -> %ld channels over %ldx%ld: %.3f ms, %.1f GFLOP/s\n", what, (long)g.kh,
              (long)g.kw, (long)g.sh, (long)g.c, (long)g.m, (long)g.h, (long)g.w, ms, flop / ms / 1e6);
}

int main() {
  // c, size, m, kernel, stride, pad
  const int64_t layers[][6] = {{64, 56, 64, 3, 1, 1},   {128, 28, 128, 3, 1, 1}, {256, 14, 256, 3, 1, 1},
                               {512, 7, 512, 3, 1, 1},  {64, 56, 128, 3, 2, 1},  {256, 14, 512, 3, 2, 1},
                               {16, 112, 96, 1, 1, 0},  {96, 56, 24, 1, 1, 0},   {960, 7, 320, 1, 1, 0}};
  std::vector<float> storage;
  for (const auto& l : layers) {
    const int64_t c = l[0], size = l[1], m = l[2], k = l[3], s = l[4], pad = l[5];
    const int64_t out = (size + 2 * pad - k) / s + 1;
    const ConvGeometry g{1, c, size, size, m, 1, k, k, s, s, 1, 1, pad, pad, pad, pad, out, out};
    std::vector<float> x(c * size * size, 0.5f), b(m, 0.1f), y(m * out * out);
    const float* packed = aligned_floats(storage, 16 * (m + 15) * c * k * k, 0.01f);  // big enough for every form
    report("direct", g, median_ms([&] {
      sdflow_kernels::conv_direct(x.data(), packed, b.data(), y.data(), g, NoEpilogue{});
    }, 10, 1, 2));
    if (k == 3 && s == 1)
      report("winograd", g, median_ms([&] {
        sdflow_kernels::conv_winograd(x.data(), packed, b.data(), y.data(), g, NoEpilogue{});
      }, 10, 1, 2));
    if (out <= 14 && c * k * k >= 2048)
      report("channels", g, median_ms([&] {
        sdflow_kernels::conv_direct_channels(x.data(), packed, b.data(), y.data(), g, NoEpilogue{});
      }, 10, 1, 2));
  }
  // 1x1 convolutions over small planes (MNASNet's last stages at 64x64, batch 2; MobileNetV2's at 224x224):
  // positions as vectors (conv_direct) against channels as vectors, each plane one row (conv_direct_channels).
  const int64_t small[][4] = {{2, 96, 2, 576}, {2, 576, 2, 96}, {2, 48, 4, 288}, {2, 240, 4, 40},
                              {2, 24, 8, 72},  {1, 160, 7, 960}, {1, 960, 7, 160}, {1, 96, 14, 576}};
  for (const auto& l : small) {
    const int64_t n = l[0], c = l[1], size = l[2], m = l[3];
    const ConvGeometry g{n, c, size, size, m, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, size, size};
    std::vector<float> x(n * c * size * size, 0.5f), b(m, 0.1f), y(n * m * size * size);
    const float* packed = aligned_floats(storage, 16 * (m + 15) * c, 0.01f);
    const double direct = median_ms([&] {
      sdflow_kernels::conv_direct(x.data(), packed, b.data(), y.data(), g, NoEpilogue{});
    }, 20, 1, 3);
    const double channels = median_ms([&] {
      sdflow_kernels::conv_direct_channels(x.data(), packed, b.data(), y.data(), g, NoEpilogue{});
    }, 20, 1, 3);
    std::printf("1x1 %ldx%ld -> %ld channels over %ldx%ld: direct %.4f ms, channels %.4f ms\n", (long)n, (long)c,
                (long)m, (long)size, (long)size, direct, channels);
  }
  // MobileNetV2's expansion + depthwise blocks: cx -> c (1x1), then 3x3 depthwise with stride s.
  const int64_t blocks[][4] = {{16, 96, 112, 2}, {24, 144, 56, 1}, {32, 192, 28, 1}, {160, 960, 7, 1}};
  for (const auto& l : blocks) {
    const int64_t cx = l[0], c = l[1], size = l[2], s = l[3], out = (size + 2 - 3) / s + 1;
    const ConvGeometry g{1, c, size, size, c, c, 3, 3, s, s, 1, 1, 1, 1, 1, 1, out, out};
    std::vector<float> x(cx * size * size, 0.5f), b(c, 0.1f), w2(c * 9, 0.2f), y(c * out * out);
    const float* packed = aligned_floats(storage, (c + 7) * cx, 0.01f);
    const double ms = median_ms([&] {
      sdflow_kernels::conv_pointwise_depthwise(x.data(), cx, packed, b.data(), NoEpilogue{}, w2.data(), b.data(),
                                               y.data(), g, NoEpilogue{});
    }, 10, 1, 2);
    std::printf("1x1 %ld -> %ld + depthwise 3x3 stride %ld over %ldx%ld: %.3f ms\n", (long)cx, (long)c, (long)s,
                (long)size, (long)size, ms);
  }
  return 0;
}
