// Convolutions of any element type in plain loops (the float32 forward convolutions have the kernels of conv.h,
// conv_direct.h and conv_gemm.h):
// - conv_transpose: ONNX ConvTranspose over 1-3 spatial dims, one output plane (sample, output channel) per task,
//   each scattering its group's input channels, accumulated in double for double and float otherwise;
// - causal_conv_with_state: a depthwise causal 1-D convolution whose first K - 1 inputs come from a carried state
//   (the Mamba-style CausalConvWithState), optional SiLU, and the next state.
#pragma once

#include <omp.h>

#include <cmath>
#include <cstdint>
#include <type_traits>
#include <vector>

#include "pool.h"

namespace sdflow_kernels {

// x [n][c][d][h][w], w [c][m / groups][kd][kh][kw], y [n][m][od][oh][ow] (1-D and 2-D as leading size-1 axes;
// the window fields of PoolGeometry, the pads leading ones).
template <class T>
void conv_transpose(const T* x, const T* w, const T* bias, T* y, int64_t n, int64_t c, int64_t m, int64_t groups,
                    const PoolGeometry& g) {
  using Acc = std::conditional_t<std::is_same_v<T, double>, double, float>;
  const int64_t mg = m / groups, cg = c / groups, plane = g.od * g.oh * g.ow, taps = g.kd * g.kh * g.kw;
#pragma omp parallel for collapse(2)
  for (int64_t b = 0; b < n; ++b)
    for (int64_t o = 0; o < m; ++o) {
      const int64_t group = o / mg, local = o % mg;
      std::vector<Acc> out(plane, bias ? (Acc)bias[o] : (Acc)0);
      for (int64_t ch = group * cg; ch < (group + 1) * cg; ++ch) {
        const T* in = x + (b * c + ch) * g.d * g.h * g.w;
        const T* k = w + (ch * mg + local) * taps;
        for (int64_t id = 0; id < g.d; ++id)
          for (int64_t ih = 0; ih < g.h; ++ih)
            for (int64_t iw = 0; iw < g.w; ++iw) {
              const Acc v = in[(id * g.h + ih) * g.w + iw];
              for (int64_t kd = 0; kd < g.kd; ++kd) {
                const int64_t od = id * g.sd + kd * g.dd - g.pd;
                if (od < 0 || od >= g.od) continue;
                for (int64_t kh = 0; kh < g.kh; ++kh) {
                  const int64_t oh = ih * g.sh + kh * g.dh - g.ph;
                  if (oh < 0 || oh >= g.oh) continue;
                  for (int64_t kw = 0; kw < g.kw; ++kw) {
                    const int64_t ow = iw * g.sw + kw * g.dw - g.pw;
                    if (ow < 0 || ow >= g.ow) continue;
                    out[(od * g.oh + oh) * g.ow + ow] += v * (Acc)k[(kd * g.kh + kh) * g.kw + kw];
                  }
                }
              }
            }
      }
      T* result = y + (b * m + o) * plane;
      for (int64_t p = 0; p < plane; ++p) result[p] = (T)out[p];
    }
}

// x [batch][channels][length], w [channels][1][k], bias [channels] (or null), past [batch][channels][k - 1] (or
// null: zeros); y like x, present [batch][channels][k - 1] (or null): the last k - 1 inputs of past + x. The sum
// is rounded to T before the activation, as the reference.
template <class T>
void causal_conv_with_state(const T* x, const T* w, const T* bias, const T* past, T* y, T* present, int64_t batch,
                            int64_t channels, int64_t length, int64_t k, bool silu) {
  using Acc = std::conditional_t<std::is_same_v<T, double>, double, float>;
#pragma omp parallel for collapse(2)
  for (int64_t b = 0; b < batch; ++b)
    for (int64_t ch = 0; ch < channels; ++ch) {
      const T* in = x + (b * channels + ch) * length;
      const T* old = past ? past + (b * channels + ch) * (k - 1) : nullptr;
      const T* kernel = w + ch * k;
      auto at = [&](int64_t p) -> T { return p < k - 1 ? (old ? old[p] : (T)0) : in[p - (k - 1)]; };
      T* out = y + (b * channels + ch) * length;
      for (int64_t t = 0; t < length; ++t) {
        Acc sum = bias ? (Acc)bias[ch] : (Acc)0;
        for (int64_t j = 0; j < k; ++j) sum += (Acc)kernel[j] * (Acc)at(t + j);
        Acc v = (Acc)(T)sum;
        if (silu) v = v / (1 + std::exp(-v));
        out[t] = (T)v;
      }
      if (present && k > 1)
        for (int64_t i = 0; i < k - 1; ++i) present[(b * channels + ch) * (k - 1) + i] = at(length + i);
    }
}

}  // namespace sdflow_kernels
