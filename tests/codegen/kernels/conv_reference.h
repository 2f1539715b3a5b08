// What the convolution kernels' unit tests (conv_test, conv_gemm_test, conv_direct_test) compare against: a direct
// convolution in double over ONNX's definition (any groups, strides, dilations, pads), random geometries' data, the
// packed weight layouts lowering writes (codegen/lowering/conv_direct.py), and a test epilogue that reads every
// index it is given.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <random>
#include <vector>

#include "check.h"
#include "test_data.h"
#include "conv.h"

using sdflow_kernels::ConvGeometry;

// A geometry with the output size ONNX gives (floor).
inline ConvGeometry geometry(int64_t n, int64_t c, int64_t h, int64_t w, int64_t m, int64_t groups, int64_t kh,
                             int64_t kw, int64_t sh, int64_t sw, int64_t dh, int64_t dw, int64_t pt, int64_t pl,
                             int64_t pb, int64_t pr) {
  ConvGeometry g{n, c, h, w, m, groups, kh, kw, sh, sw, dh, dw, pt, pl, pb, pr, 0, 0};
  g.oh = (h + pt + pb - dh * (kh - 1) - 1) / sh + 1;
  g.ow = (w + pl + pr - dw * (kw - 1) - 1) / sw + 1;
  return g;
}

// The epilogue the tests fuse: depends on the sample, the channel and the position, so a value stored at the
// wrong place or with the wrong index fails.
struct TestEpilogue {
  float operator()(int64_t n, int64_t m, int64_t p, float a) const {
    const float v = a * 0.5f + 0.25f * float(n) - 0.01f * float(m) + 0.001f * float(p % 13);
    return v > 0.0f ? v : 0.1f * v;
  }
};

// y[n][m][p] in double, with bias (may be empty) and, when `epilogue`, TestEpilogue applied; also the sum of
// |x * w| per output in `scale` (the float rounding's size).
inline std::vector<double> reference(const std::vector<float>& x, const std::vector<float>& w,
                                     const std::vector<float>& bias, const ConvGeometry& g, bool epilogue,
                                     std::vector<double>& scale) {
  const int64_t cg = g.c / g.groups, mg = g.m / g.groups, p = g.oh * g.ow;
  std::vector<double> y(g.n * g.m * p);
  scale.assign(y.size(), 0.0);
  for (int64_t n = 0; n < g.n; ++n)
    for (int64_t m = 0; m < g.m; ++m)
      for (int64_t oh = 0; oh < g.oh; ++oh)
        for (int64_t ow = 0; ow < g.ow; ++ow) {
          double sum = bias.empty() ? 0.0 : bias[m], size = std::fabs(sum);
          for (int64_t c = 0; c < cg; ++c)
            for (int64_t i = 0; i < g.kh; ++i)
              for (int64_t j = 0; j < g.kw; ++j) {
                const int64_t ih = oh * g.sh - g.pt + i * g.dh, iw = ow * g.sw - g.pl + j * g.dw;
                if (ih < 0 || ih >= g.h || iw < 0 || iw >= g.w) continue;
                const double v = double(x[((n * g.c + (m / mg) * cg + c) * g.h + ih) * g.w + iw]) *
                                 w[((m * cg + c) * g.kh + i) * g.kw + j];
                sum += v, size += std::fabs(v);
              }
          const int64_t at = (n * g.m + m) * p + oh * g.ow + ow;
          y[at] = epilogue ? double(TestEpilogue{}(n, m, oh * g.ow + ow, float(sum))) : sum;
          scale[at] = size;
        }
  return y;
}

// Whether `got` matches `want` within float rounding of sums of that size; prints the first mismatch.
inline bool close(const std::vector<float>& got, const std::vector<double>& want, const std::vector<double>& scale,
                  const char* what, const ConvGeometry& g) {
  for (size_t i = 0; i < want.size(); ++i)
    if (!(std::fabs(got[i] - want[i]) <= 1e-5 * (scale[i] + 1.0))) {
      std::printf("  %s: y[%zu] = %g, expected %g (c %ld h %ld w %ld m %ld groups %ld kernel %ldx%ld stride %ldx%ld)\n",
                  what, i, got[i], want[i], long(g.c), long(g.h), long(g.w), long(g.m), long(g.groups), long(g.kh),
                  long(g.kw), long(g.sh), long(g.sw));
      return false;
    }
  return true;
}

// Floats at a 64-byte aligned address, as lowering hands packed weights over (the kernels' aligned loads).
struct Aligned {
  std::vector<float> storage;
  int64_t offset;
  explicit Aligned(int64_t size) : storage(size + 16, 0.0f) {
    offset = int64_t((64 - reinterpret_cast<uintptr_t>(storage.data()) % 64) % 64) / 4;
  }
  float* data() { return storage.data() + offset; }
  const float* data() const { return storage.data() + offset; }
  float& operator[](int64_t i) { return data()[i]; }
};

// [M][C][KH][KW] -> [ceil(M / block)][C * KH * KW][block] (output channels past M are zeros), as conv_direct.pack
// and channels_pack write it.
inline Aligned pack_blocks(const std::vector<float>& w, int64_t m, int64_t taps, int64_t block) {
  const int64_t blocks = (m + block - 1) / block;
  Aligned packed(blocks * taps * block);
  for (int64_t i = 0; i < m; ++i)
    for (int64_t k = 0; k < taps; ++k) packed[((i / block) * taps + k) * block + i % block] = w[i * taps + k];
  return packed;
}
