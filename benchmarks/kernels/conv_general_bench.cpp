// Microbenchmark of codegen/kernels/conv_general.h: ConvTranspose 4x4 stride 2 pads 1 (a decoder's 2x upsampling,
// [1, 64, 32, 32] -> [1, 32, 64, 64]) and CausalConvWithState (k = 4, SiLU) over [1, 1536, 256] (Mamba-130M's
// width); medians of 10 runs in ms. Build and run:
//   g++ -O3 -march=native -fopenmp -I codegen/kernels benchmarks/kernels/conv_general_bench.cpp -o /tmp/cg_bench
//   OMP_NUM_THREADS=2 /tmp/cg_bench
#include <cstdio>
#include <vector>

#include "bench.h"
#include "conv_general.h"

int main() {
  const sdflow_kernels::PoolGeometry g{1, 32, 32, 1, 4, 4, 1, 2, 2, 1, 1, 1, 0, 1, 1, 0, 1, 1, 1, 64, 64, 0, false,
                                       2.0, false};
  std::vector<float> x(64 * 32 * 32, 0.5f), w(64 * 32 * 16, 0.1f), b(32, 0.0f), y(32 * 64 * 64);
  const double ms = median_ms([&] { sdflow_kernels::conv_transpose(x.data(), w.data(), b.data(), y.data(), 1, 64, 32, 1, g); },
                              10, 1, 2);
  std::printf("conv transpose 4x4 stride 2, 64 -> 32 channels, 32x32 -> 64x64: %.3f ms (%.1f GFLOP/s)\n", ms,
              2.0 * 64 * 32 * 32 * 32 * 16 / ms / 1e6);
  const int64_t channels = 1536, length = 256, k = 4;
  std::vector<float> s(channels * length, 0.5f), kw(channels * k, 0.25f), bias(channels, 0.1f), out(s.size()),
      present(channels * (k - 1));
  std::printf("causal conv with state, k = 4, 1536 channels x 256 steps: %.3f ms\n", median_ms([&] {
    sdflow_kernels::causal_conv_with_state(s.data(), kw.data(), bias.data(), (const float*)nullptr, out.data(),
                                           present.data(), 1, channels, length, k, true);
  }, 10, 1, 2));
  return 0;
}
