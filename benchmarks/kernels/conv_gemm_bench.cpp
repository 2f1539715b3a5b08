// Microbenchmark of codegen/kernels/conv_gemm.h (im2col + OpenBLAS) on the ResNet-18 and MobileNetV2 layers it
// serves (batch 1: the 7x7 stride-2 stem, strided 1x1 downsampling, MobileNetV2's 3x3 stride-2 stem) and on a
// 3x3 layer the direct kernels serve (to compare with benchmarks/kernels/conv_direct_bench.cpp); medians of 10
// runs, ms and GFLOP/s. Build and run:
//   g++ -O3 -march=native -fopenmp -I codegen/kernels benchmarks/kernels/conv_gemm_bench.cpp -lopenblas -o /tmp/cgb
//   OMP_NUM_THREADS=2 /tmp/cgb
// libraries: openblas
#include <cstdio>
#include <vector>

#include "bench.h"
#include "conv_gemm.h"

int main() {
  using sdflow_kernels::ConvGeometry;
  // c, size, m, kernel, stride, pad
  const int64_t layers[][6] = {{3, 224, 64, 7, 2, 3}, {64, 56, 128, 1, 2, 0}, {256, 14, 512, 1, 2, 0},
                               {3, 224, 32, 3, 2, 1}, {64, 56, 64, 3, 1, 1}};
  for (const auto& l : layers) {
    const int64_t c = l[0], size = l[1], m = l[2], k = l[3], s = l[4], pad = l[5];
    const int64_t out = (size + 2 * pad - k) / s + 1;
    const ConvGeometry g{1, c, size, size, m, 1, k, k, s, s, 1, 1, pad, pad, pad, pad, out, out};
    std::vector<float> x(c * size * size, 0.5f), w(m * c * k * k, 0.25f), b(m, 0.1f), y(m * out * out);
    const double ms = median_ms([&] {
      sdflow_kernels::conv_gemm(x.data(), w.data(), b.data(), y.data(), g, sdflow_kernels::NoEpilogue{});
    }, 10, 1, 2);
    const double flop = 2.0 * m * out * out * c * k * k;
    std::printf("%ldx%ld stride %ld, %ld -> %ld channels over %ldx%ld: %.3f ms, %.1f GFLOP/s\n", (long)k, (long)k,
                (long)s, (long)c, (long)m, (long)size, (long)size, ms, flop / ms / 1e6);
  }
  return 0;
}
