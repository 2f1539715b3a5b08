// 3-D convolution (video models: R(2+1)D's spatial and temporal kernels) in plain loops: one output plane
// (sample, output channel) per OpenMP task, each output summing its group's input channels over the window.
// Layouts are ONNX's: x[N][C][D][H][W], w[M][C/G][KD][KH][KW], y[N][M][OD][OH][OW]; the bias may be null.
#pragma once
#include <cstdint>

namespace sdflow_kernels {

struct Conv3dGeometry {
  int64_t n, c, d, h, w;          // input
  int64_t m, groups;              // output channels, groups
  int64_t kd, kh, kw;             // kernel
  int64_t sd, sh, sw;             // strides
  int64_t dd, dh, dw;             // dilations
  int64_t pd, ph, pw;             // leading pads (trailing ones only shape the output)
  int64_t od, oh, ow;             // output
};

inline void conv3d(const float* x, const float* w, const float* bias, float* y, const Conv3dGeometry& g) {
  const int64_t cg = g.c / g.groups, mg = g.m / g.groups, taps = g.kd * g.kh * g.kw;
  const int64_t in_plane = g.d * g.h * g.w, out_plane = g.od * g.oh * g.ow;
#pragma omp parallel for collapse(2) schedule(dynamic)
  for (int64_t n = 0; n < g.n; ++n) {
    for (int64_t m = 0; m < g.m; ++m) {
      const int64_t c0 = (m / mg) * cg;
      float* out = y + (n * g.m + m) * out_plane;
      for (int64_t od = 0; od < g.od; ++od)
        for (int64_t oh = 0; oh < g.oh; ++oh)
          for (int64_t ow = 0; ow < g.ow; ++ow) {
            float acc = bias ? bias[m] : 0.0f;
            for (int64_t c = 0; c < cg; ++c) {
              const float* in = x + (n * g.c + c0 + c) * in_plane;
              const float* k = w + (m * cg + c) * taps;
              for (int64_t kd = 0; kd < g.kd; ++kd) {
                const int64_t id = od * g.sd + kd * g.dd - g.pd;
                if (id < 0 || id >= g.d) continue;
                for (int64_t kh = 0; kh < g.kh; ++kh) {
                  const int64_t ih = oh * g.sh + kh * g.dh - g.ph;
                  if (ih < 0 || ih >= g.h) continue;
                  for (int64_t kw = 0; kw < g.kw; ++kw) {
                    const int64_t iw = ow * g.sw + kw * g.dw - g.pw;
                    if (iw < 0 || iw >= g.w) continue;
                    acc += in[(id * g.h + ih) * g.w + iw] * k[(kd * g.kh + kh) * g.kw + kw];
                  }
                }
              }
            }
            out[(od * g.oh + oh) * g.ow + ow] = acc;
          }
    }
  }
}

}  // namespace sdflow_kernels
