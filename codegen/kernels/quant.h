// Integer kernels of ONNX's quantization ops, in plain loops (correct, not tuned: issue 18's VNNI kernels replace
// the two products):
// - dynamic_quantize_linear: DynamicQuantizeLinear, a min/max pass (the range always holds 0), then the uint8
//   quantizing pass;
// - matmul_integer: MatMulInteger, rows in parallel, int32 accumulation, zero points per tensor, per row of A,
//   per column of B;
// - conv_integer: ConvInteger over 1-D or 2-D windows (conv.h's geometry), one output plane per task.
#pragma once

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "conv.h"

namespace sdflow_kernels {

inline void dynamic_quantize_linear(const float* x, int64_t n, uint8_t* y, float* scale, uint8_t* zero_point) {
  float low = 0, high = 0;
  for (int64_t k = 0; k < n; ++k) low = std::min(low, x[k]), high = std::max(high, x[k]);
  const float s = (high - low) / 255.0f;
  const float z = s == 0 ? 0.0f : std::min(255.0f, std::max(0.0f, std::nearbyint(-low / s)));
  for (int64_t k = 0; k < n; ++k)
    y[k] = s == 0 ? 0 : (uint8_t)std::min(255.0f, std::max(0.0f, std::nearbyint(x[k] / s) + z));
  scale[0] = s;
  zero_point[0] = (uint8_t)z;
}

// A zero point: null (0), one value (`per` false), or one per row / column / channel (`per` true).
template <class Z>
inline int32_t zero_at(const Z* zero, bool per, int64_t index) {
  return zero ? (int32_t)zero[per ? index : 0] : 0;
}

// y [rows][n] = (A - a_zero) (B - b_zero) in int32: A [rows][k] (rows = batches x m), B [k][n] or, with
// b_batched, one [k][n] per batch of m rows of A.
template <class A, class B, class ZA, class ZB>
void matmul_integer(const A* a, const B* b, const ZA* a_zero, bool a_zero_per_row, const ZB* b_zero,
                    bool b_zero_per_column, int32_t* y, int64_t rows, int64_t m, int64_t k, int64_t n,
                    bool b_batched) {
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < rows; ++r) {
    int32_t* __restrict out = y + r * n;
    for (int64_t j = 0; j < n; ++j) out[j] = 0;
    const int32_t za = zero_at(a_zero, a_zero_per_row, r % m);
    const B* bb = b + (b_batched ? (r / m) * k * n : 0);
    // Over k, one row of B scaled into the output row (vectorised over its n columns).
    for (int64_t p = 0; p < k; ++p) {
      const int32_t av = (int32_t)a[r * k + p] - za;
      const B* __restrict row = bb + p * n;
      for (int64_t j = 0; j < n; ++j) out[j] += av * ((int32_t)row[j] - zero_at(b_zero, b_zero_per_column, j));
    }
  }
}

// y [n][m][oh][ow] in int32 from x [n][c][h][w] and w [m][c / groups][kh][kw] (g: conv.h's geometry; the pads'
// trailing fields are not read), x_zero one value, w_zero one or one per output channel.
template <class X, class W, class ZX, class ZW>
void conv_integer(const X* x, const W* w, const ZX* x_zero, const ZW* w_zero, bool w_zero_per_channel, int32_t* y,
                  const ConvGeometry& g) {
  const int64_t cg = g.c / g.groups, mg = g.m / g.groups;
  const int32_t zx = zero_at(x_zero, false, 0);
#pragma omp parallel for collapse(2) schedule(static)
  for (int64_t n = 0; n < g.n; ++n)
    for (int64_t m = 0; m < g.m; ++m) {
      const int32_t zw = zero_at(w_zero, w_zero_per_channel, m);
      const int64_t c0 = (m / mg) * cg;
      for (int64_t oh = 0; oh < g.oh; ++oh)
        for (int64_t ow = 0; ow < g.ow; ++ow) {
          int32_t acc = 0;
          for (int64_t c = 0; c < cg; ++c)
            for (int64_t i = 0; i < g.kh; ++i) {
              const int64_t ih = oh * g.sh - g.pt + i * g.dh;
              if (ih < 0 || ih >= g.h) continue;
              for (int64_t j = 0; j < g.kw; ++j) {
                const int64_t iw = ow * g.sw - g.pl + j * g.dw;
                if (iw < 0 || iw >= g.w) continue;
                acc += ((int32_t)x[((n * g.c + c0 + c) * g.h + ih) * g.w + iw] - zx) *
                       ((int32_t)w[((m * cg + c) * g.kh + i) * g.kw + j] - zw);
              }
            }
          y[((n * g.m + m) * g.oh + oh) * g.ow + ow] = acc;
        }
    }
}

}  // namespace sdflow_kernels
