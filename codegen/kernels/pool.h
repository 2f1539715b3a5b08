// Window pooling over 1-3 spatial dims (MaxPool with its indices, AveragePool, LpPool) for any element type, one
// (sample, channel) plane per call (lowering maps the planes over the threads), and LRN. The float32 2-D MaxPool
// without indices has a vectorised kernel of its own (conv.h max_pool_plane).
#pragma once

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <type_traits>

namespace sdflow_kernels {

// 1-D and 2-D windows as 3-D ones with leading size-1 axes.
struct PoolGeometry {
  int64_t d, h, w;        // the plane's sizes
  int64_t kd, kh, kw;     // window
  int64_t sd, sh, sw;     // strides
  int64_t dd, dh, dw;     // dilations
  int64_t pd, ph, pw;     // leading pads
  int64_t qd, qh, qw;     // trailing pads
  int64_t od, oh, ow;     // output sizes
  int kind;               // 0 max, 1 average, 2 Lp
  bool count_include_pad; // average: padded positions count (positions past the padding, from ceil_mode, do not)
  double p;               // Lp's p
  bool column_major;      // MaxPool's storage_order 1: indices count the columns fastest
};

// One plane: x (d x h x w) -> y (od x oh x ow), and MaxPool's indices (or null) into the whole input, `plane`
// being this plane's number (sample * channels + channel). Max keeps the first NaN of a window.
template <class T>
void pool_plane(const T* x, T* y, int64_t* indices, int64_t plane, const PoolGeometry& g) {
  using Acc = std::conditional_t<std::is_same_v<T, double>, double, float>;
  for (int64_t od = 0; od < g.od; ++od)
    for (int64_t oh = 0; oh < g.oh; ++oh)
      for (int64_t ow = 0; ow < g.ow; ++ow) {
        const int64_t ds = od * g.sd - g.pd, hs = oh * g.sh - g.ph, ws = ow * g.sw - g.pw;
        const int64_t out = (od * g.oh + oh) * g.ow + ow;
        T best_value = std::numeric_limits<T>::lowest();
        Acc acc = 0;
        int64_t count = 0, best = -1, best_column_major = -1;
        for (int64_t kd = 0; kd < g.kd; ++kd) {
          const int64_t id = ds + kd * g.dd;
          if (id < 0 || id >= g.d) continue;
          for (int64_t kh = 0; kh < g.kh; ++kh) {
            const int64_t ih = hs + kh * g.dh;
            if (ih < 0 || ih >= g.h) continue;
            for (int64_t kw = 0; kw < g.kw; ++kw) {
              const int64_t iw = ws + kw * g.dw;
              if (iw < 0 || iw >= g.w) continue;
              const T v = x[(id * g.h + ih) * g.w + iw];
              if (g.kind == 0) {
                if (v > best_value || (v != v && best_value == best_value)) {
                  best_value = v;
                  best = (id * g.h + ih) * g.w + iw;
                  best_column_major = (iw * g.h + ih) * g.d + id;
                }
              } else if (g.kind == 1) {
                acc += v, ++count;
              } else if (g.p == 1) {
                acc += std::abs((Acc)v);
              } else if (g.p == 2) {
                acc += (Acc)v * (Acc)v;
              } else {
                acc += std::pow(std::abs((Acc)v), (Acc)g.p);
              }
            }
          }
        }
        if (g.kind == 0) {
          y[out] = best_value;
          if (indices) indices[out] = plane * g.d * g.h * g.w + (g.column_major ? best_column_major : best);
        } else if (g.kind == 2) {
          y[out] = (T)(g.p == 1 ? acc : g.p == 2 ? std::sqrt(acc) : std::pow(acc, (Acc)1 / (Acc)g.p));
        } else if (g.count_include_pad) {
          // Padded positions count, positions past the padding (ceil_mode) do not.
          auto taps = [](int64_t start, int64_t k, int64_t dilation, int64_t size, int64_t trailing) {
            return (std::min(start + (k - 1) * dilation, size + trailing - 1) - start) / dilation + 1;
          };
          const int64_t padded = taps(ds, g.kd, g.dd, g.d, g.qd) * taps(hs, g.kh, g.dh, g.h, g.qh) *
                                 taps(ws, g.kw, g.dw, g.w, g.qw);
          y[out] = (T)(acc / (Acc)padded);
        } else {
          y[out] = (T)(acc / (Acc)count);
        }
      }
}

// LRN over x [n][c][positions]: y = x / (bias + alpha / size * (sum of squares over the channel window))^beta,
// the window [c - (size - 1) / 2, c + size - 1 - (size - 1) / 2] clipped to the channels.
template <class T>
void lrn(const T* x, T* y, int64_t n, int64_t c, int64_t positions, int64_t size, double alpha, double beta,
         double bias) {
  using Acc = std::conditional_t<std::is_same_v<T, double>, double, float>;
  const Acc scale = (Acc)(alpha / size), base = (Acc)bias, power = (Acc)beta;
#pragma omp parallel for collapse(2)
  for (int64_t b = 0; b < n; ++b)
    for (int64_t ch = 0; ch < c; ++ch) {
      const int64_t low = std::max<int64_t>(0, ch - (size - 1) / 2);
      const int64_t high = std::min<int64_t>(c, ch + (size - 1) - (size - 1) / 2 + 1);
      for (int64_t p = 0; p < positions; ++p) {
        Acc sum = 0;
        for (int64_t k = low; k < high; ++k) {
          const Acc v = x[(b * c + k) * positions + p];
          sum += v * v;
        }
        const Acc v = x[(b * c + ch) * positions + p];
        y[(b * c + ch) * positions + p] = (T)(v / std::pow(base + scale * sum, power));
      }
    }
}

}  // namespace sdflow_kernels
