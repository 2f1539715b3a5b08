// Convolution as im2col + BLAS GEMM (float32, any groups; the kernel of convolutions the direct kernels of
// conv_direct.h do not serve), in tiles, one per thread at a time: a tile is a block of output rows (whole rows of
// the image, ~384 positions) times a block of output channels; its im2col columns, its GEMM (cblas_sgemm called
// inside the parallel loop runs on the calling thread: OpenBLAS's OpenMP build checks omp_in_parallel) and its
// epilogue all stay in that core's cache. When there are fewer row blocks than threads (deep layers: 7x7 or 14x14
// images), the output channels are split too and the im2col matrix of the (sample, group) is built once, in
// parallel, first. A plain 1x1 convolution reads its input as the matrix. Needs a CBLAS (the program links
// OpenBLAS).
#pragma once

#include <cblas.h>

#include "conv.h"

namespace sdflow_kernels {

// Row r of the im2col matrix (channel, kernel row, kernel column) for output rows [oh0, oh1) of one image of its
// group's channels, into column + r * ld; out-of-image columns are skipped by range (inside), not by test.
inline void im2col_row(const float* image, float* column, int64_t ld, int64_t oh0, int64_t oh1, int64_t r,
                       const ConvGeometry& g) {
  const int64_t kw = r % g.kw, kh = (r / g.kw) % g.kh, c = r / (g.kw * g.kh);
  const float* plane = image + c * g.h * g.w;
  float* row = column + r * ld;
  const int64_t off = kw * g.dw - g.pl;
  const auto [lo, hi] = inside(off, g.sw, g.ow, g.w);
  for (int64_t oh = oh0; oh < oh1; ++oh) {
    const int64_t ih = oh * g.sh - g.pt + kh * g.dh;
    float* out = row + (oh - oh0) * g.ow;
    if (ih < 0 || ih >= g.h) {
      for (int64_t q = 0; q < g.ow; ++q) out[q] = 0.0f;
      continue;
    }
    const float* in = plane + ih * g.w + off;
    for (int64_t q = 0; q < lo; ++q) out[q] = 0.0f;
    if (g.sw == 1) {
      for (int64_t q = lo; q < hi; ++q) out[q] = in[q];
    } else {
      for (int64_t q = lo; q < hi; ++q) out[q] = in[q * g.sw];
    }
    for (int64_t q = hi; q < g.ow; ++q) out[q] = 0.0f;
  }
}

constexpr int64_t TILE_TARGET = 4;  // tiles the work is split into at least, where it can be

template <class E>
void conv_gemm(const float* x, const float* w, const float* bias, float* y, const ConvGeometry& g, const E& e) {
  const int64_t cg = g.c / g.groups, mg = g.m / g.groups, kk = g.taps(), p = g.plane(), ow = g.ow, oh = g.oh;
  const bool im2col = !g.pointwise();
  // The tiles do not depend on the thread count (as if 2 threads asked for 4 tiles): BLAS sums a block of output
  // channels in an order that can depend on the block's height, and the numbers must not change with the threads.
  const int64_t target = TILE_TARGET;
  const int64_t rows = std::max<int64_t>(1, std::min<int64_t>(oh, 384 / ow));
  const int64_t tp = (oh + rows - 1) / rows;
  const bool shared = tp * g.n * g.groups < target;
  const int64_t tm = shared ? std::max<int64_t>(1, std::min<int64_t>((mg + 15) / 16, (target + tp - 1) / tp)) : 1;
  const int64_t mb = (mg + tm - 1) / tm;
  // One tile: output channels [m0, m1) of group gi, output rows [oh0, oh1) of sample n, from columns whose first
  // row starts at `column` (leading dimension ld).
  auto tile = [&](int64_t n, int64_t gi, int64_t m0, int64_t m1, int64_t oh0, int64_t oh1, const float* column,
                  int64_t ld) {
    const int64_t p0 = oh0 * ow, width = (oh1 - oh0) * ow;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m1 - m0, width, kk, 1.0f, w + (gi * mg + m0) * kk, kk,
                column, ld, 0.0f, y + (n * g.m + gi * mg + m0) * p + p0, p);
    for (int64_t m = gi * mg + m0; m < gi * mg + m1; ++m) {
      float* out = y + (n * g.m + m) * p;
      store_run(out, p0, out + p0, 1, width, n, m, bias, e);
    }
  };
  if (!shared) {
#pragma omp parallel
    {
      static thread_local std::vector<float> buffer;  // kept between calls: no allocation, no page faults per call
      if (im2col && buffer.size() < (size_t)(kk * rows * ow)) buffer.resize(kk * rows * ow);
#pragma omp for schedule(dynamic)
      for (int64_t t = 0; t < g.n * g.groups * tp; ++t) {
        const int64_t n = t / (g.groups * tp), gi = (t / tp) % g.groups, oh0 = (t % tp) * rows;
        const int64_t oh1 = std::min(oh, oh0 + rows);
        const float* image = x + (n * g.c + gi * cg) * g.h * g.w;
        if (im2col) {
          for (int64_t r = 0; r < kk; ++r) im2col_row(image, buffer.data(), (oh1 - oh0) * ow, oh0, oh1, r, g);
          tile(n, gi, 0, mg, oh0, oh1, buffer.data(), (oh1 - oh0) * ow);
        } else {
          tile(n, gi, 0, mg, oh0, oh1, image + oh0 * ow, p);
        }
      }
    }
  } else {
    static thread_local std::vector<float> columns_of_caller;
    if (im2col && columns_of_caller.size() < (size_t)(kk * p)) columns_of_caller.resize(kk * p);
    float* column = columns_of_caller.data();  // the workers' own thread_local copies are empty
    for (int64_t n = 0; n < g.n; ++n)
      for (int64_t gi = 0; gi < g.groups; ++gi) {
        const float* image = x + (n * g.c + gi * cg) * g.h * g.w;
        if (im2col) {
#pragma omp parallel for
          for (int64_t r = 0; r < kk; ++r) im2col_row(image, column, p, 0, oh, r, g);
        }
        const float* columns = im2col ? column : image;
#pragma omp parallel for schedule(dynamic)
        for (int64_t t = 0; t < tm * tp; ++t) {
          const int64_t m0 = (t / tp) * mb, m1 = std::min(mg, m0 + mb), oh0 = (t % tp) * rows;
          const int64_t oh1 = std::min(oh, oh0 + rows);
          if (m0 < m1) tile(n, gi, m0, m1, oh0, oh1, columns + oh0 * ow, p);
        }
      }
  }
}

}  // namespace sdflow_kernels
