// Unit test of codegen/kernels/pool.h against windows enumerated per ONNX's definition in double: MaxPool values
// and indices (row- and column-major storage order, NaN in a window), AveragePool with and without counting the
// padding (and ceil mode's positions past it, which never count), LpPool for p = 1, 2, 3, over 1-D, 2-D and 3-D
// windows with strides, dilations and uneven pads; integer MaxPool; and LRN against its formula.
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <limits>
#include <random>
#include <vector>

#include "check.h"
#include "test_data.h"
#include "pool.h"

using sdflow_kernels::PoolGeometry;

static PoolGeometry window(int64_t d, int64_t h, int64_t w, int64_t kd, int64_t kh, int64_t kw, int64_t s,
                           int64_t dil, int64_t pad, int64_t trailing, bool ceil) {
  PoolGeometry g{d, h, w, kd, kh, kw, 1, s, s, 1, dil, dil, 0, pad, pad, 0, trailing, trailing, 1, 0, 0, 0, false, 2.0,
                 false};
  if (kd > 1) g.sd = s, g.dd = dil, g.pd = pad, g.qd = trailing;
  if (h == 1 && kh == 1) g.sh = g.dh = 1, g.ph = g.qh = 0;  // 1-D: the row axis is no window axis
  auto out = [&](int64_t size, int64_t k, int64_t st, int64_t di, int64_t p, int64_t q) {
    const int64_t span = size + p + q - di * (k - 1) - 1;
    const int64_t count = (ceil ? (span + st - 1) / st : span / st) + 1;
    return ceil && (count - 1) * st >= size + p ? count - 1 : count;  // no window starts in the trailing padding
  };
  g.od = out(d, kd, g.sd, g.dd, g.pd, g.qd), g.oh = out(h, kh, g.sh, g.dh, g.ph, g.qh), g.ow = out(w, kw, s, dil, pad, trailing);
  return g;
}

static void check_plane(const PoolGeometry& g, bool nan) {
  std::uniform_real_distribution<float> value(-2.0f, 2.0f);
  std::vector<float> x(g.d * g.h * g.w);
  for (auto& v : x) v = value(random_engine);
  if (nan) x[x.size() / 2] = NAN;
  const int64_t outputs = g.od * g.oh * g.ow;
  for (int kind = 0; kind < 3; ++kind)
    for (int variant = 0; variant < 2; ++variant) {
      PoolGeometry p = g;
      p.kind = kind, p.count_include_pad = variant, p.column_major = variant, p.p = variant ? 3.0 : (kind == 2 ? 1.0 : 2.0);
      std::vector<float> y(outputs);
      std::vector<int64_t> indices(outputs);
      sdflow_kernels::pool_plane(x.data(), y.data(), kind == 0 ? indices.data() : nullptr, 2, p);
      for (int64_t od = 0; od < p.od; ++od)
        for (int64_t oh = 0; oh < p.oh; ++oh)
          for (int64_t ow = 0; ow < p.ow; ++ow) {
            double best = -INFINITY, sum = 0;
            int64_t count = 0, padded = 0, where = -1;
            bool saw_nan = false;
            for (int64_t a = 0; a < p.kd; ++a)
              for (int64_t b = 0; b < p.kh; ++b)
                for (int64_t c = 0; c < p.kw; ++c) {
                  const int64_t id = od * p.sd - p.pd + a * p.dd, ih = oh * p.sh - p.ph + b * p.dh,
                                iw = ow * p.sw - p.pw + c * p.dw;
                  const bool in_padding = id >= -p.pd && id < p.d + p.qd && ih >= -p.ph && ih < p.h + p.qh &&
                                          iw >= -p.pw && iw < p.w + p.qw;
                  padded += in_padding;
                  if (id < 0 || id >= p.d || ih < 0 || ih >= p.h || iw < 0 || iw >= p.w) continue;
                  const double v = x[(id * p.h + ih) * p.w + iw];
                  if (v != v && !saw_nan) saw_nan = true, where = variant ? (iw * p.h + ih) * p.d + id : (id * p.h + ih) * p.w + iw;
                  if (!saw_nan && v > best) best = v, where = variant ? (iw * p.h + ih) * p.d + id : (id * p.h + ih) * p.w + iw;
                  sum += kind == 1 ? v : std::pow(std::fabs(v), p.p);
                  ++count;
                }
            const int64_t out = (od * p.oh + oh) * p.ow + ow;
            if (kind == 0) {
              CHECK(saw_nan ? y[out] != y[out] : y[out] == (float)best);
              CHECK(indices[out] == 2 * p.d * p.h * p.w + where);
            } else {
              const double want = kind == 1 ? sum / (variant ? padded : count) : std::pow(sum, 1.0 / p.p);
              if (!saw_nan) CHECK(std::fabs(y[out] - want) < 1e-5 * (1 + std::fabs(want)));
            }
          }
    }
}

int main() {
  check_plane(window(1, 1, 13, 1, 1, 3, 2, 1, 1, 1, false), false);   // 1-D
  check_plane(window(1, 11, 9, 1, 3, 3, 2, 1, 1, 1, false), false);   // 3x3 stride 2 pads 1
  check_plane(window(1, 11, 9, 1, 2, 3, 2, 1, 0, 1, true), true);     // ceil mode, NaN
  check_plane(window(1, 12, 10, 1, 3, 3, 1, 2, 2, 2, false), false);  // dilation 2
  check_plane(window(5, 6, 7, 2, 3, 2, 2, 1, 1, 0, false), true);     // 3-D
  {  // integer MaxPool: lowest as the start, indices too
    const std::vector<int8_t> x = {-128, -100, 5, -128, 7, 7, -3, -128, 0};
    PoolGeometry g = window(1, 3, 3, 1, 2, 2, 1, 1, 0, 0, false);
    std::vector<int8_t> y(4);
    std::vector<int64_t> indices(4);
    sdflow_kernels::pool_plane(x.data(), y.data(), indices.data(), 0, g);
    CHECK(y[0] == 7 && y[1] == 7 && y[2] == 7 && y[3] == 7);
    CHECK(indices[0] == 4 && indices[1] == 4 && indices[2] == 4 && indices[3] == 4);
  }
  {  // LRN
    const int64_t n = 2, c = 7, positions = 5, size = 3;
    std::uniform_real_distribution<float> value(-2.0f, 2.0f);
    std::vector<float> x(n * c * positions), y(x.size());
    for (auto& v : x) v = value(random_engine);
    sdflow_kernels::lrn(x.data(), y.data(), n, c, positions, size, 1e-2, 0.75, 2.0);
    for (int64_t b = 0; b < n; ++b)
      for (int64_t ch = 0; ch < c; ++ch)
        for (int64_t p = 0; p < positions; ++p) {
          double sum = 0;
          for (int64_t k = ch - 1; k <= ch + 1; ++k)
            if (k >= 0 && k < c) sum += double(x[(b * c + k) * positions + p]) * x[(b * c + k) * positions + p];
          const double want = x[(b * c + ch) * positions + p] / std::pow(2.0 + 1e-2 / size * sum, 0.75);
          CHECK(std::fabs(y[(b * c + ch) * positions + p] - want) < 1e-6);
        }
  }
  std::printf(failures ? "%d failures\n" : "ok\n", failures);
  return failures ? 1 : 0;
}
