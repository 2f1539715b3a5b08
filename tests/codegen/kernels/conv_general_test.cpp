// Unit test of codegen/kernels/conv_general.h: conv_transpose against the gather form of a transposed
// convolution (each output sums the inputs whose scattered taps land on it), in double, over 1-D, 2-D and 3-D
// windows with strides, dilations, pads and groups, with and without bias, in float and double; and
// causal_conv_with_state against its formula over [past, x] (with and without a past, SiLU, k = 1 and 4, present).
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <random>
#include <vector>

#include "check.h"
#include "test_data.h"
#include "conv_general.h"

using sdflow_kernels::PoolGeometry;

template <class T>
static std::vector<T> random_vector(int64_t size) {
  std::uniform_real_distribution<double> value(-1.0, 1.0);
  std::vector<T> v(size);
  for (auto& x : v) x = (T)value(random_engine);
  return v;
}

template <class T>
static void transpose_case(int64_t n, int64_t c, int64_t m, int64_t groups, int64_t d, int64_t h, int64_t w,
                           int64_t kd, int64_t kh, int64_t kw, int64_t s, int64_t dil, int64_t pad, bool bias) {
  PoolGeometry g{d, h, w, kd, kh, kw, kd > 1 ? s : 1, kh > 1 ? s : 1, s, kd > 1 ? dil : 1, kh > 1 ? dil : 1, dil,
                 kd > 1 ? pad : 0, kh > 1 ? pad : 0, pad, 0, 0, 0, 0, 0, 0, 0, false, 2.0, false};
  auto out = [](int64_t size, int64_t k, int64_t st, int64_t di, int64_t p) { return (size - 1) * st + di * (k - 1) + 1 - 2 * p; };
  g.od = out(d, kd, g.sd, g.dd, g.pd), g.oh = out(h, kh, g.sh, g.dh, g.ph), g.ow = out(w, kw, g.sw, g.dw, g.pw);
  const int64_t mg = m / groups, cg = c / groups, taps = kd * kh * kw, plane = g.od * g.oh * g.ow;
  const auto x = random_vector<T>(n * c * d * h * w), wt = random_vector<T>(c * mg * taps), b = random_vector<T>(m);
  std::vector<T> y(n * m * plane);
  sdflow_kernels::conv_transpose(x.data(), wt.data(), bias ? b.data() : nullptr, y.data(), n, c, m, groups, g);
  for (int64_t bi = 0; bi < n; ++bi)
    for (int64_t o = 0; o < m; ++o)
      for (int64_t od = 0; od < g.od; ++od)
        for (int64_t oh = 0; oh < g.oh; ++oh)
          for (int64_t ow = 0; ow < g.ow; ++ow) {
            double sum = bias ? (double)b[o] : 0.0;
            for (int64_t ci = 0; ci < cg; ++ci) {
              const int64_t ch = (o / mg) * cg + ci;
              for (int64_t a = 0; a < kd; ++a)
                for (int64_t e = 0; e < kh; ++e)
                  for (int64_t f = 0; f < kw; ++f) {
                    const int64_t td = od + g.pd - a * g.dd, th = oh + g.ph - e * g.dh, tw = ow + g.pw - f * g.dw;
                    if (td < 0 || th < 0 || tw < 0 || td % g.sd || th % g.sh || tw % g.sw) continue;
                    const int64_t id = td / g.sd, ih = th / g.sh, iw = tw / g.sw;
                    if (id >= d || ih >= h || iw >= w) continue;
                    sum += (double)x[(((bi * c + ch) * d + id) * h + ih) * w + iw] *
                           (double)wt[((ch * mg + o % mg) * kd * kh + a * kh + e) * kw + f];
                  }
            }
            CHECK(std::fabs((double)y[((bi * m + o) * g.od + od) * g.oh * g.ow + oh * g.ow + ow] - sum) < 1e-5);
          }
}

static void causal_case(int64_t k, bool past, bool silu) {
  const int64_t batch = 2, channels = 3, length = 6;
  const auto x = random_vector<float>(batch * channels * length), w = random_vector<float>(channels * k),
             b = random_vector<float>(channels), old = random_vector<float>(batch * channels * (k - 1));
  std::vector<float> y(x.size()), present(batch * channels * (k - 1));
  sdflow_kernels::causal_conv_with_state(x.data(), w.data(), b.data(), past ? old.data() : nullptr, y.data(),
                                         present.data(), batch, channels, length, k, silu);
  for (int64_t bc = 0; bc < batch * channels; ++bc) {
    std::vector<double> full(k - 1 + length);  // [past, x]
    for (int64_t i = 0; i < k - 1; ++i) full[i] = past ? old[bc * (k - 1) + i] : 0.0;
    for (int64_t t = 0; t < length; ++t) full[k - 1 + t] = x[bc * length + t];
    for (int64_t t = 0; t < length; ++t) {
      double sum = b[bc % channels];
      for (int64_t j = 0; j < k; ++j) sum += (double)w[(bc % channels) * k + j] * full[t + j];
      if (silu) sum = sum / (1 + std::exp(-sum));
      CHECK(std::fabs(y[bc * length + t] - sum) < 1e-5);
    }
    for (int64_t i = 0; i < k - 1; ++i) CHECK(present[bc * (k - 1) + i] == (float)full[length + i]);
  }
}

int main() {
  transpose_case<float>(2, 4, 6, 2, 1, 1, 7, 1, 1, 3, 2, 1, 1, true);     // 1-D, grouped
  transpose_case<float>(1, 3, 5, 1, 1, 5, 6, 1, 3, 3, 2, 1, 1, false);    // 2-D stride 2, pads
  transpose_case<double>(1, 2, 4, 1, 1, 4, 4, 1, 2, 2, 1, 2, 0, true);    // dilation 2, double
  transpose_case<float>(1, 2, 2, 1, 3, 3, 3, 2, 2, 2, 2, 1, 0, true);     // 3-D
  for (int64_t k : {1, 4})
    for (bool past : {false, true}) causal_case(k, past, past);
  std::printf(failures ? "%d failures\n" : "ok\n", failures);
  return failures ? 1 : 0;
}
