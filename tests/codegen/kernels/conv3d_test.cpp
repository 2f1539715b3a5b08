// Unit test of codegen/kernels/conv3d.h against a reference written the other way round: it scatters every input
// element into the outputs it reaches (as a transposed convolution gathers), in double. Prints "ok" or the first
// mismatch and exits non-zero. Built and run by tests/codegen/test_kernels.py.
#include <cmath>
#include <cstdio>
#include <random>
#include <vector>

#include "conv3d.h"

using sdflow_kernels::Conv3dGeometry;

static std::vector<double> reference(const std::vector<float>& x, const std::vector<float>& w,
                                     const std::vector<float>& b, const Conv3dGeometry& g) {
  const int64_t cg = g.c / g.groups, mg = g.m / g.groups;
  std::vector<double> y(g.n * g.m * g.od * g.oh * g.ow);
  for (int64_t n = 0; n < g.n; ++n)
    for (int64_t m = 0; m < g.m; ++m)
      for (int64_t p = 0; p < g.od * g.oh * g.ow; ++p) y[(n * g.m + m) * g.od * g.oh * g.ow + p] = b.empty() ? 0 : b[m];
  for (int64_t n = 0; n < g.n; ++n)
    for (int64_t c = 0; c < g.c; ++c)
      for (int64_t id = 0; id < g.d; ++id)
        for (int64_t ih = 0; ih < g.h; ++ih)
          for (int64_t iw = 0; iw < g.w; ++iw) {
            const double v = x[(((n * g.c + c) * g.d + id) * g.h + ih) * g.w + iw];
            for (int64_t ml = 0; ml < mg; ++ml) {
              const int64_t m = (c / cg) * mg + ml;
              for (int64_t kd = 0; kd < g.kd; ++kd)
                for (int64_t kh = 0; kh < g.kh; ++kh)
                  for (int64_t kw = 0; kw < g.kw; ++kw) {
                    const int64_t td = id + g.pd - kd * g.dd, th = ih + g.ph - kh * g.dh, tw = iw + g.pw - kw * g.dw;
                    if (td < 0 || th < 0 || tw < 0 || td % g.sd || th % g.sh || tw % g.sw) continue;
                    const int64_t od = td / g.sd, oh = th / g.sh, ow = tw / g.sw;
                    if (od >= g.od || oh >= g.oh || ow >= g.ow) continue;
                    const double k = w[(((m * cg + c % cg) * g.kd + kd) * g.kh + kh) * g.kw + kw];
                    y[(((n * g.m + m) * g.od + od) * g.oh + oh) * g.ow + ow] += v * k;
                  }
            }
          }
  return y;
}

static int64_t out_size(int64_t in, int64_t k, int64_t s, int64_t dil, int64_t pads) {
  return (in + pads - dil * (k - 1) - 1) / s + 1;
}

int main() {
  // n c d h w, m groups, kd kh kw, sd sh sw, dd dh dw, pd ph pw + trailing pads
  const int64_t cases[][21] = {
      {2, 3, 5, 8, 8, 6, 1, 1, 3, 3, 1, 1, 1, 1, 1, 1, 0, 1, 1, 0, 1},  // spatial (1,3,3), trailing pads 0 1 1
      {1, 4, 6, 5, 7, 4, 2, 3, 3, 2, 2, 1, 2, 1, 2, 1, 1, 2, 0, 1, 2},  // strided, dilated, grouped
      {2, 4, 4, 3, 3, 8, 4, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 1, 0},  // temporal (3,1,1), depthwise-like
  };
  std::mt19937 random(7);
  std::normal_distribution<float> normal;
  for (const auto& t : cases) {
    Conv3dGeometry g{t[0], t[1], t[2], t[3], t[4], t[5], t[6], t[7], t[8], t[9], t[10], t[11], t[12],
                     t[13], t[14], t[15], t[16], t[17], t[18], 0, 0, 0};
    const int64_t trailing[3] = {t[19], t[20], t[19]};
    g.od = out_size(g.d, g.kd, g.sd, g.dd, g.pd + trailing[0]);
    g.oh = out_size(g.h, g.kh, g.sh, g.dh, g.ph + trailing[1]);
    g.ow = out_size(g.w, g.kw, g.sw, g.dw, g.pw + trailing[2]);
    std::vector<float> x(g.n * g.c * g.d * g.h * g.w), w(g.m * (g.c / g.groups) * g.kd * g.kh * g.kw), b(g.m);
    for (auto* v : {&x, &w, &b})
      for (auto& e : *v) e = normal(random);
    for (bool with_bias : {true, false}) {
      std::vector<float> y(g.n * g.m * g.od * g.oh * g.ow, NAN);
      sdflow_kernels::conv3d(x.data(), w.data(), with_bias ? b.data() : nullptr, y.data(), g);
      const auto expected = reference(x, w, with_bias ? b : std::vector<float>{}, g);
      for (size_t i = 0; i < y.size(); ++i) {
        if (!(std::fabs(y[i] - expected[i]) <= 1e-4 * (1 + std::fabs(expected[i])))) {
          std::printf("mismatch at %zu: %g vs %g\n", i, (double)y[i], expected[i]);
          return 1;
        }
      }
    }
  }
  std::printf("ok\n");
  return 0;
}
