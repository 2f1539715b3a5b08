// Convolution building blocks and the depthwise kernels (float32, ONNX layouts: x[N][C][H][W], w[M][C/G][KH][KW],
// y[N][M][OH][OW]; a 1-D convolution is one with H = KH = OH = 1):
// - the geometry every convolution kernel takes (ConvGeometry) and its epilogue: a functor e(n, m, p, a) -> float
//   applied to each output (sample n, channel m, position p in the plane; a = the convolution plus bias) while
//   its plane or tile is in cache (fused element-wise ops); NoEpilogue stores a as it is;
// - zero-padded phase planes (pad_phase, phase_offset) that turn a strided window into runs of consecutive floats;
// - depthwise convolution in two forms: conv_depthwise_planes (each plane copied zero-padded, then a flat range of
//   positions) and conv_depthwise_rows (AVX-512: rows summed straight from the image with masked loads);
// - max_pool_plane / average_pool_plane: a 2-D MaxPool / AveragePool of one plane over padded phase planes.
// The kernels that need BLAS (conv_gemm.h) and the direct kernels on packed weights (conv_direct.h) build on this.
#pragma once

#include <omp.h>

#include <algorithm>
#include <cstdint>
#include <limits>
#include <type_traits>
#include <utility>
#include <vector>
#ifdef __AVX512F__
#include <immintrin.h>
#endif

namespace sdflow_kernels {

struct ConvGeometry {
  int64_t n, c, h, w;        // input: samples, channels, rows, columns
  int64_t m, groups;         // output channels, groups
  int64_t kh, kw, sh, sw;    // kernel, strides
  int64_t dh, dw;            // dilations
  int64_t pt, pl, pb, pr;    // pads: top, left, bottom, right
  int64_t oh, ow;            // output rows, columns
  int64_t plane() const { return oh * ow; }
  int64_t taps() const { return (c / groups) * kh * kw; }  // per output: its group's channels times the window
  // A plain 1x1 convolution (unit kernel and strides, no padding): its input is its own im2col matrix.
  bool pointwise() const { return kh == 1 && kw == 1 && sh == 1 && sw == 1 && !pt && !pl && !pb && !pr; }
};

// The epilogue that stores the convolution (plus bias) as it is.
struct NoEpilogue {
  float operator()(int64_t, int64_t, int64_t, float a) const { return a; }
};
template <class E>
constexpr bool is_no_epilogue = std::is_same_v<std::decay_t<E>, NoEpilogue>;

// out[p0 + j] = e(n, m, p0 + j, src[j * step] + bias[m]) for j < width (bias may be null): outputs of plane `out`
// (sample n, channel m) stored with the epilogue applied on the way. src may be out + p0 (step 1: in place).
template <class E>
inline void store_run(float* out, int64_t p0, const float* src, int64_t step, int64_t width, int64_t n, int64_t m,
                      const float* bias, const E& e) {
  if constexpr (is_no_epilogue<E>) {
    if (!bias) {
      if (src != out + p0 || step != 1)
        for (int64_t j = 0; j < width; ++j) out[p0 + j] = src[j * step];
      return;
    }
  }
  const float b = bias ? bias[m] : 0.0f;
  for (int64_t j = 0; j < width; ++j) {
    const int64_t p = p0 + j;
    out[p] = e(n, m, p, src[j * step] + b);
  }
}

// A per-thread scratch buffer of at least `size` floats, kept between calls (no allocation, no page faults per
// call): the caller's, which the workers of its parallel regions may write into.
inline float* scratch_floats(size_t size) {
  static thread_local std::vector<float> buffer;
  if (buffer.size() < size) buffer.resize(size);
  return buffer.data();
}

// The j in [0, count) whose column j * stride + offset lies in [0, width), as [lo, hi) with hi >= lo: outside it
// a window position reads padding; inside it a loop has no branch and vectorises.
inline std::pair<int64_t, int64_t> inside(int64_t offset, int64_t stride, int64_t count, int64_t width) {
  const int64_t lo = offset >= 0 ? 0 : std::min(count, (-offset + stride - 1) / stride);
  const int64_t hi = width - 1 - offset < 0 ? lo : std::max(lo, std::min(count, (width - 1 - offset) / stride + 1));
  return {lo, hi};
}

// Phase (a, b) of an h x w image padded by pt rows and pl columns before it, at strides (sh, sw):
// to[i * w2 + j] = image[i * sh + a - pt][j * sw + b - pl], `fill` outside the image (0 for a convolution, -inf
// for MaxPool); `to` is h2 x w2. SW: the column stride when known at compile time (1 and 2 are: the row copy
// vectorises; with a run-time stride it is a scalar gather, 2x slower for a stride-2 MaxPool), 0 for `sw`.
template <int SW>
__attribute__((noinline)) void pad_phase_rows(const float* from, int64_t h, int64_t w, int64_t pt, int64_t pl,
                                              int64_t sh, int64_t sw, int64_t a, int64_t b, int64_t h2, int64_t w2,
                                              float* to, float fill) {
  const int64_t stride = SW > 0 ? SW : sw;
  const auto [lo, hi] = inside(b - pl, stride, w2, w);
  for (int64_t i = 0; i < h2; ++i) {
    float* row = to + i * w2;
    const int64_t r = i * sh + a - pt;
    if (r < 0 || r >= h) {
      for (int64_t j = 0; j < w2; ++j) row[j] = fill;
      continue;
    }
    const float* in = from + r * w;
    for (int64_t j = 0; j < lo; ++j) row[j] = fill;
    for (int64_t j = lo; j < hi; ++j) row[j] = in[j * stride + b - pl];
    for (int64_t j = hi; j < w2; ++j) row[j] = fill;
  }
}

// Not inlined (nor its rows): gcc 12 at -O3 miscompiled the copy inlined into a MaxPool whose sizes were all
// constants (dilation 2, pads 2: the rows after the top padding were left unwritten; correct at -O2 or with
// -fno-tree-loop-vectorize); it runs once per plane, so the call costs nothing.
__attribute__((noinline)) inline void pad_phase(const float* from, int64_t h, int64_t w, int64_t pt, int64_t pl,
                                                int64_t sh, int64_t sw, int64_t a, int64_t b, int64_t h2, int64_t w2,
                                                float* to, float fill = 0.0f) {
  if (sw == 1) pad_phase_rows<1>(from, h, w, pt, pl, sh, sw, a, b, h2, w2, to, fill);
  else if (sw == 2) pad_phase_rows<2>(from, h, w, pt, pl, sh, sw, a, b, h2, w2, to, fill);
  else pad_phase_rows<0>(from, h, w, pt, pl, sh, sw, a, b, h2, w2, to, fill);
}

// Where padded pixel (r, t) relative to a window's corner lies in the phase planes of pad_phase (each h2 x w2,
// phase (a, b) at index a * sw + b): the offset of a tap from the output position it serves.
inline int64_t phase_offset(int64_t r, int64_t t, int64_t sh, int64_t sw, int64_t h2, int64_t w2) {
  return ((r % sh) * sw + t % sw) * h2 * w2 + (r / sh) * w2 + t / sw;
}

#ifdef __AVX512F__
// Lanes j of a 16-lane load starting at column c (of a row of width w) that lie inside the row.
inline __mmask16 row_lanes(int64_t c, int64_t w) {
  const int64_t lo = std::max<int64_t>(0, -c), hi = std::min<int64_t>(16, w - c);
  return hi <= lo ? (__mmask16)0 : (__mmask16)(((1u << hi) - 1) & ~((1u << lo) - 1));
}

// Depthwise rows: one channel plane's output rows [oh0, oh1), every column, summed into acc (row-major, g.ow
// apart), read straight from the unpadded image: the lanes of a load that fall into the padding are masked off (a
// masked-off lane never faults) and rows above or below the image read a row of zeros, so there is no padded copy
// and no position is computed twice. Output columns in chunks of 16, 8 rows at a time: 8 independent sums in
// flight per tap (an FMA's latency times its rate), one load per FMA and one mask per tap. Column stride 1, or 2:
// two loads per tap and their even lanes picked by one permute.
template <int KH = 0, int KW = 0, int SW = 0>
inline void depthwise_rows(const float* __restrict image, const float* __restrict kernel, float* __restrict acc,
                           int64_t oh0, int64_t oh1, const ConvGeometry& g) {
  constexpr int R = 8;
  const int64_t h = g.h, w = g.w, ow = g.ow, sw = SW ? SW : g.sw, kh = KH ? KH : g.kh, kw = KW ? KW : g.kw;
  static thread_local std::vector<float> zeros;
  if (zeros.size() < (size_t)(w + g.pl + 64)) zeros.assign(w + g.pl + 64, 0.0f);
  const float* zero_row = zeros.data() + g.pl + 16;  // any lane of a load at column >= -pl - 16 not masked off
  const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
  for (int64_t oh = oh0; oh < oh1; oh += R) {  // the input rows of 8 output rows stay in L1 across their chunks
    const int64_t rows = std::min<int64_t>(R, oh1 - oh);
    for (int64_t ow0 = 0; ow0 < ow; ow0 += 16) {
      const __mmask16 out = (__mmask16)((1u << std::min<int64_t>(16, ow - ow0)) - 1);
      __m512 s[R];
#pragma GCC unroll 8
      for (int r = 0; r < R; ++r) s[r] = _mm512_setzero_ps();
      for (int64_t i = 0; i < kh; ++i) {
        const float* from[R];
#pragma GCC unroll 8
        for (int r = 0; r < R; ++r) {
          const int64_t ih = (oh + r) * g.sh - g.pt + i * g.dh;
          from[r] = r < rows && ih >= 0 && ih < h ? image + ih * w : zero_row;
        }
        for (int64_t j = 0; j < kw; ++j) {
          const int64_t c = ow0 * sw - g.pl + j * g.dw;  // the column lane 0 reads
          const __m512 k = _mm512_set1_ps(kernel[i * kw + j]);
          if (sw == 1) {
            const __mmask16 m = row_lanes(c, w) & out;
#pragma GCC unroll 8
            for (int r = 0; r < R; ++r) s[r] = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, from[r] + c), k, s[r]);
          } else {
            const __mmask16 m0 = row_lanes(c, w), m1 = row_lanes(c + 16, w);
#pragma GCC unroll 8
            for (int r = 0; r < R; ++r) {
              const __m512 lo = _mm512_maskz_loadu_ps(m0, from[r] + c);
              const __m512 hi = _mm512_maskz_loadu_ps(m1, from[r] + c + 16);
              s[r] = _mm512_fmadd_ps(_mm512_permutex2var_ps(lo, even, hi), k, s[r]);
            }
          }
        }
      }
      // (A constant bound: s indexed by constants stays in registers; up to a run-time `rows` gcc 12 keeps it on
      // the stack, a store per sum and tap.)
#pragma GCC unroll 8
      for (int r = 0; r < R; ++r)
        if (r < rows) _mm512_mask_storeu_ps(acc + (oh - oh0 + r) * ow + ow0, out, s[r]);
    }
  }
}

// The flat range of a padded plane (the stride-1 depthwise kernel): acc[q] = sum over taps t of
// kernel[t] * in[q + offset of t] for q < count, 8 vectors of positions in flight (the compiler's own vectorisation
// of that loop was 10-20% slower). wp: the padded row's width.
inline void flat_taps(const float* __restrict in, const float* __restrict kernel, float* __restrict acc,
                      int64_t count, int64_t kh, int64_t kw, int64_t dh, int64_t dw, int64_t wp) {
  int64_t q = 0;
  for (; q + 128 <= count; q += 128) {
    __m512 s[8];
#pragma GCC unroll 8
    for (int v = 0; v < 8; ++v) s[v] = _mm512_setzero_ps();
    for (int64_t i = 0; i < kh; ++i)
      for (int64_t j = 0; j < kw; ++j) {
        const __m512 k = _mm512_set1_ps(kernel[i * kw + j]);
        const float* p = in + q + i * dh * wp + j * dw;
#pragma GCC unroll 8
        for (int v = 0; v < 8; ++v) s[v] = _mm512_fmadd_ps(_mm512_loadu_ps(p + v * 16), k, s[v]);
      }
#pragma GCC unroll 8
    for (int v = 0; v < 8; ++v) _mm512_storeu_ps(acc + q + v * 16, s[v]);
  }
  for (; q < count; q += 16) {
    const __mmask16 m = count - q >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (count - q)) - 1);
    __m512 s = _mm512_setzero_ps();
    for (int64_t i = 0; i < kh; ++i)
      for (int64_t j = 0; j < kw; ++j)
        s = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, in + q + i * dh * wp + j * dw),
                            _mm512_set1_ps(kernel[i * kw + j]), s);
    _mm512_mask_storeu_ps(acc + q, m, s);
  }
}
#else
inline void flat_taps(const float* __restrict in, const float* __restrict kernel, float* __restrict acc,
                      int64_t count, int64_t kh, int64_t kw, int64_t dh, int64_t dw, int64_t wp) {
#pragma omp simd
  for (int64_t q = 0; q < count; ++q) {
    float sum = 0.0f;
    for (int64_t i = 0; i < kh; ++i)
      for (int64_t j = 0; j < kw; ++j) sum += kernel[i * kw + j] * in[q + i * dh * wp + j * dw];
    acc[q] = sum;
  }
}

// The same sums as the AVX-512 form in plain C++ (lowering picks conv_depthwise_rows on AVX-512 CPUs; a build
// without AVX-512 still compiles and computes them).
template <int KH = 0, int KW = 0, int SW = 0>
inline void depthwise_rows(const float* __restrict image, const float* __restrict kernel, float* __restrict acc,
                           int64_t oh0, int64_t oh1, const ConvGeometry& g) {
  for (int64_t oh = oh0; oh < oh1; ++oh) {
    float* row = acc + (oh - oh0) * g.ow;
    for (int64_t x = 0; x < g.ow; ++x) row[x] = 0.0f;
    for (int64_t i = 0; i < g.kh; ++i) {
      const int64_t ih = oh * g.sh - g.pt + i * g.dh;
      if (ih < 0 || ih >= g.h) continue;
      for (int64_t j = 0; j < g.kw; ++j) {
        const auto [lo, hi] = inside(j * g.dw - g.pl, g.sw, g.ow, g.w);
        const float k = kernel[i * g.kw + j];
        const float* from = image + ih * g.w + j * g.dw - g.pl;
        for (int64_t x = lo; x < hi; ++x) row[x] += k * from[x * g.sw];
      }
    }
  }
}
#endif

// A depthwise window known at compile time (kh, kw, column stride; 0: read from the geometry at run time).
template <int KH, int KW, int SW>
struct DepthwiseWindow {
  static constexpr int kh = KH, kw = KW, sw = SW;
};

// Calls f(DepthwiseWindow<...>{}) with the window of g as constants where it is a common one (3x3 and 5x5, column
// stride 1 or 2: the tap loops unroll, as they did when each layer's code was generated with its sizes), else
// with zeros.
template <class F>
inline void with_depthwise_window(const ConvGeometry& g, F&& f) {
  if (g.kh == 3 && g.kw == 3 && g.sw == 1) f(DepthwiseWindow<3, 3, 1>{});
  else if (g.kh == 3 && g.kw == 3 && g.sw == 2) f(DepthwiseWindow<3, 3, 2>{});
  else if (g.kh == 5 && g.kw == 5 && g.sw == 1) f(DepthwiseWindow<5, 5, 1>{});
  else if (g.kh == 5 && g.kw == 5 && g.sw == 2) f(DepthwiseWindow<5, 5, 2>{});
  else f(DepthwiseWindow<0, 0, 0>{});
}

// Output rows per block of a depthwise plane summed through a buffer (~4096 outputs: the sums stay in L1/L2).
inline int64_t depthwise_block_rows(const ConvGeometry& g) {
  return std::max<int64_t>(1, std::min<int64_t>(g.oh, 4096 / std::max<int64_t>(g.ow, 1)));
}

// One depthwise plane: image (one input channel) -> out (output channel m of sample n) with its KH x KW kernel,
// in blocks of `rows` output rows summed by depthwise_rows into acc (rows * ow floats), then stored with bias
// and epilogue in one flat pass.
template <class Window, class E>
inline void depthwise_plane_rows(const float* image, const float* kernel, float* acc, float* out, int64_t rows,
                                 int64_t n, int64_t m, const float* bias, const ConvGeometry& g, const E& e) {
  for (int64_t oh0 = 0; oh0 < g.oh; oh0 += rows) {
    const int64_t oh1 = std::min(g.oh, oh0 + rows);
    depthwise_rows<Window::kh, Window::kw, Window::sw>(image, kernel, acc, oh0, oh1, g);
    store_run(out, oh0 * g.ow, acc, 1, (oh1 - oh0) * g.ow, n, m, bias, e);
  }
}

// Depthwise convolution (every group one input channel; g.m / g.groups output channels per group), each plane
// by depthwise_plane_rows. Runs of planes are claimed as the threads get free (~8 runs per thread): the cores of a
// shared machine do not always run at the same speed. Small planes (MobileNetV2's 14x14 and 7x7) cost no per-row
// overhead this way: the padded-plane form spent more time copying and looping per plane than summing.
template <class E>
void conv_depthwise_rows(const float* x, const float* w, const float* bias, float* y, const ConvGeometry& g,
                         const E& e) {
  const int64_t mg = g.m / g.groups, planes = g.n * g.m;
  with_depthwise_window(g, [&](auto window) {
    using Window = decltype(window);
#pragma omp parallel
    {
      const int64_t rows = depthwise_block_rows(g);
      static thread_local std::vector<float> buffer;
      if (buffer.size() < (size_t)(rows * g.ow)) buffer.resize(rows * g.ow);
      const int64_t run = std::max<int64_t>(1, planes / (8 * omp_get_num_threads()));
#pragma omp for schedule(dynamic, run)
      for (int64_t plane = 0; plane < planes; ++plane) {
        const int64_t n = plane / g.m, m = plane % g.m, c = m / mg;
        depthwise_plane_rows<Window>(x + (n * g.c + c) * g.h * g.w, w + m * g.kh * g.kw, buffer.data(),
                                     y + plane * g.plane(), rows, n, m, bias, g, e);
      }
    }
  });
}

// Depthwise convolution of small planes (one input channel per output channel: g.m == g.c == g.groups), vectors
// over 16 channels instead of positions: a row of 2-7 outputs fills 2-7 of a vector's 16 lanes, and depthwise_rows
// sums 8 rows per tap whatever the plane's height (MNASNet's 2x2 planes under 5x5 windows: 200 FMAs for 4
// outputs). Per task (sample, block of 16 channels) the block is transposed into [h * w][16], every output position
// sums the taps that fall inside the image (a list built once per call: no padding, no bounds test), and each
// channel's plane is stored from the transposed sums with bias and epilogue.
template <class E>
void conv_depthwise_channels(const float* x, const float* w, const float* bias, float* y, const ConvGeometry& g,
                             const E& e) {
  const int64_t hw = g.h * g.w, p = g.plane(), window = g.kh * g.kw, blocks = (g.m + 15) / 16;
  // The taps inside the image, per output position q: entries first[q]..first[q + 1] of (input pixel, tap).
  static thread_local std::vector<int64_t> first, pixel, tap;  // the caller's; the workers only read them
  first.assign(p + 1, 0);
  pixel.clear();
  tap.clear();
  for (int64_t r = 0; r < g.oh; ++r)
    for (int64_t c = 0; c < g.ow; ++c) {
      for (int64_t i = 0; i < g.kh; ++i) {
        const int64_t ih = r * g.sh - g.pt + i * g.dh;
        if (ih < 0 || ih >= g.h) continue;
        for (int64_t j = 0; j < g.kw; ++j) {
          const int64_t iw = c * g.sw - g.pl + j * g.dw;
          if (iw < 0 || iw >= g.w) continue;
          pixel.push_back(ih * g.w + iw);
          tap.push_back(i * g.kw + j);
        }
      }
      first[r * g.ow + c + 1] = (int64_t)pixel.size();
    }
  const int64_t* __restrict from = first.data();
  const int64_t* __restrict at = pixel.data();
  const int64_t* __restrict taps = tap.data();
#pragma omp parallel
  {
    static thread_local std::vector<float> buffer;
    const size_t need = (size_t)((hw + window + p) * 16);
    if (buffer.size() < need) buffer.resize(need);
    float* __restrict image = buffer.data();      // [hw][16]
    float* __restrict kernel = image + hw * 16;   // [window][16]
    float* __restrict sums = kernel + window * 16;  // [p][16]
    const int64_t run = std::max<int64_t>(1, g.n * blocks / (8 * omp_get_num_threads()));
#pragma omp for schedule(dynamic, run)
    for (int64_t t = 0; t < g.n * blocks; ++t) {
      const int64_t n = t / blocks, m0 = (t % blocks) * 16, lanes = std::min<int64_t>(16, g.m - m0);
      for (int64_t l = 0; l < 16; ++l) {  // lanes past the last channel sum zeros and are not stored
        const float* plane = x + (n * g.c + m0 + l) * hw;
        const float* weights = w + (m0 + l) * window;
        if (l < lanes) {
          for (int64_t k = 0; k < hw; ++k) image[k * 16 + l] = plane[k];
          for (int64_t k = 0; k < window; ++k) kernel[k * 16 + l] = weights[k];
        } else {
          for (int64_t k = 0; k < hw; ++k) image[k * 16 + l] = 0.0f;
          for (int64_t k = 0; k < window; ++k) kernel[k * 16 + l] = 0.0f;
        }
      }
      for (int64_t q = 0; q < p; ++q) {
#ifdef __AVX512F__
        __m512 s = _mm512_setzero_ps();
        for (int64_t k = from[q]; k < from[q + 1]; ++k)
          s = _mm512_fmadd_ps(_mm512_loadu_ps(kernel + taps[k] * 16), _mm512_loadu_ps(image + at[k] * 16), s);
        _mm512_storeu_ps(sums + q * 16, s);
#else
        float s[16] = {};
        for (int64_t k = from[q]; k < from[q + 1]; ++k)
#pragma omp simd
          for (int l = 0; l < 16; ++l) s[l] += kernel[taps[k] * 16 + l] * image[at[k] * 16 + l];
        for (int l = 0; l < 16; ++l) sums[q * 16 + l] = s[l];
#endif
      }
      for (int64_t l = 0; l < lanes; ++l)
        store_run(y + (n * g.m + m0 + l) * p, 0, sums + l, 16, p, n, m0 + l, bias, e);
    }
  }
}

// Depthwise convolution over zero-padded planes: one output plane per task, its input channel first copied,
// zero-padded, into a per-thread buffer, so that no tap tests the image's bounds. Stride 1: the output positions
// run as one flat range over blocks of padded rows (flat_taps; the columns past each row's end are computed and
// dropped when the rows are stored); other strides: along each output row, the position loop vectorised and each
// position's taps summed in a register.
template <class E>
void conv_depthwise_planes(const float* x, const float* w, const float* bias, float* y, const ConvGeometry& g,
                           const E& e) {
  const int64_t hp = g.h + g.pt + g.pb, wp = g.w + g.pl + g.pr, mg = g.m / g.groups, planes = g.n * g.m;
  const int64_t oh = g.oh, ow = g.ow, kh = g.kh, kw = g.kw, sw = g.sw, dh = g.dh, dw = g.dw;
#pragma omp parallel
  {
    static thread_local std::vector<float> buffer;
    const size_t need = (size_t)(hp * wp + std::max<int64_t>(1024 + wp, ow) + 16);
    if (buffer.size() < need) buffer.resize(need);
    float* __restrict padded = buffer.data();
    float* __restrict acc = padded + hp * wp;
    const int64_t run = std::max<int64_t>(1, planes / (8 * omp_get_num_threads()));  // as conv_depthwise_rows
#pragma omp for schedule(dynamic, run)
    for (int64_t plane = 0; plane < planes; ++plane) {
      const int64_t n = plane / g.m, m = plane % g.m, c = m / mg;
      const float* kernel = w + m * kh * kw;
      float* out = y + plane * g.plane();
      pad_phase(x + (n * g.c + c) * g.h * g.w, g.h, g.w, g.pt, g.pl, 1, 1, 0, 0, hp, wp, padded);
      if (g.sh == 1 && sw == 1) {
        const int64_t rows = std::max<int64_t>(1, 1024 / wp);  // blocks of whole padded rows, ~1024 positions
        for (int64_t oh0 = 0; oh0 < oh; oh0 += rows) {
          const int64_t oh1 = std::min(oh, oh0 + rows);
          flat_taps(padded + oh0 * wp, kernel, acc, (oh1 - 1 - oh0) * wp + ow, kh, kw, dh, dw, wp);
          for (int64_t r = oh0; r < oh1; ++r) store_run(out, r * ow, acc + (r - oh0) * wp, 1, ow, n, m, bias, e);
        }
      } else {
        for (int64_t r = 0; r < oh; ++r) {
          const float* __restrict in = padded + r * g.sh * wp;
          float* __restrict row = out + r * ow;
#pragma omp simd
          for (int64_t q = 0; q < ow; ++q) {
            float sum = 0.0f;
            for (int64_t i = 0; i < kh; ++i)
              for (int64_t j = 0; j < kw; ++j) sum += kernel[i * kw + j] * in[i * dh * wp + q * sw + j * dw];
            row[q] = sum;
          }
          store_run(out, r * ow, row, 1, ow, n, m, bias, e);
        }
      }
    }
  }
}

// The output rows of max_pool_plane from its phase planes: per output the taps' largest value (the first NaN
// wins). TAPS: the window's size when known at compile time (3x3, 2x2: the window loop unrolls into the
// vectorised position loop), 0 for `count` taps tap by tap over the row.
template <int TAPS>
inline void max_pool_rows(const float* planes, const int64_t* tap, int64_t count, int64_t w2, float* y, int64_t oh,
                          int64_t ow) {
  const float lowest = -std::numeric_limits<float>::infinity();
  for (int64_t r = 0; r < oh; ++r) {
    const float* __restrict in = planes + r * w2;
    float* __restrict out = y + r * ow;
    if constexpr (TAPS > 0) {
      int64_t offsets[TAPS];
      for (int k = 0; k < TAPS; ++k) offsets[k] = tap[k];
#pragma omp simd
      for (int64_t q = 0; q < ow; ++q) {
        float best = lowest;
        for (int k = 0; k < TAPS; ++k) {
          const float v = in[q + offsets[k]];
          best = (v > best || v != v) ? v : best;
        }
        out[q] = best;
      }
    } else {
      for (int64_t q = 0; q < ow; ++q) out[q] = lowest;
      for (int64_t k = 0; k < count; ++k) {
        const float* __restrict from = in + tap[k];
#pragma omp simd
        for (int64_t q = 0; q < ow; ++q) {
          const float v = from[q], best = out[q];
          out[q] = (v > best || v != v) ? v : best;
        }
      }
    }
  }
}

// A pooled plane (x: h x w) copied into a per-thread buffer as sh x sw phase planes padded with `fill` (phase
// (a, b) holds the padded pixels (i * sh + a, j * sw + b)), large enough for every window of the output (ceil
// mode's too), and each tap's offset in them: a window's tap k at output (r, q) is planes[r * w2 + q + taps[k]].
struct PoolPlanes {
  const float* planes;
  const int64_t* taps;
  int64_t w2;
};

inline PoolPlanes pool_phase_planes(const float* x, const ConvGeometry& g, float fill) {
  const int64_t hp = std::max<int64_t>(g.h + g.pt + g.pb, (g.oh - 1) * g.sh + (g.kh - 1) * g.dh + 1);
  const int64_t wp = std::max<int64_t>(g.w + g.pl + g.pr, (g.ow - 1) * g.sw + (g.kw - 1) * g.dw + 1);
  const int64_t h2 = (hp + g.sh - 1) / g.sh, w2 = (wp + g.sw - 1) / g.sw, plane2 = h2 * w2;
  static thread_local std::vector<float> buffer;
  if (buffer.size() < (size_t)(g.sh * g.sw * plane2 + w2 + 16)) buffer.resize(g.sh * g.sw * plane2 + w2 + 16);
  float* planes = buffer.data();
  for (int64_t phase = 0; phase < g.sh * g.sw; ++phase)
    pad_phase(x, g.h, g.w, g.pt, g.pl, g.sh, g.sw, phase / g.sw, phase % g.sw, h2, w2, planes + phase * plane2, fill);
  static thread_local std::vector<int64_t> taps;
  taps.resize(g.kh * g.kw);
  for (int64_t i = 0; i < g.kh; ++i)
    for (int64_t j = 0; j < g.kw; ++j) taps[i * g.kw + j] = phase_offset(i * g.dh, j * g.dw, g.sh, g.sw, h2, w2);
  return {planes, taps.data(), w2};
}

// A float32 2-D MaxPool of one plane (x: h x w, y: oh x ow; g.n, g.c, g.m and g.groups are not read) over its
// -inf padded phase planes, the outputs vectorised along each row: each tap is a run of consecutive floats. A NaN
// in the window is the result (as ReduceMax).
inline void max_pool_plane(const float* x, float* y, const ConvGeometry& g) {
  const PoolPlanes p = pool_phase_planes(x, g, -std::numeric_limits<float>::infinity());
  const int64_t count = g.kh * g.kw;
  if (count == 9) max_pool_rows<9>(p.planes, p.taps, count, p.w2, y, g.oh, g.ow);
  else if (count == 4) max_pool_rows<4>(p.planes, p.taps, count, p.w2, y, g.oh, g.ow);
  else max_pool_rows<0>(p.planes, p.taps, count, p.w2, y, g.oh, g.ow);
}

// Taps of a window along one axis that count for AveragePool: inside the image, or (count_include_pad) inside the
// padding too; positions past the trailing padding (ceil mode) never count.
inline int64_t average_taps(int64_t o, int64_t stride, int64_t pad, int64_t k, int64_t dilation, int64_t size,
                            int64_t trailing, bool count_include_pad) {
  const int64_t start = o * stride - pad;
  if (count_include_pad) return (std::min(start + (k - 1) * dilation, size + trailing - 1) - start) / dilation + 1;
  int64_t count = 0;
  for (int64_t i = 0; i < k; ++i) count += start + i * dilation >= 0 && start + i * dilation < size;
  return count;
}

// A float32 2-D AveragePool of one plane (as max_pool_plane: g.n, g.c, g.m and g.groups are not read), over
// zero-padded phase planes: the taps summed in window order, tap by tap over each output row (vectorised; the
// padding adds zeros, which leave a sum unchanged), then divided by the taps counted, a product of per-axis counts.
// The same sums, in the same order, as pool.h's window loop.
inline void average_pool_plane(const float* x, float* y, const ConvGeometry& g, bool count_include_pad) {
  const PoolPlanes p = pool_phase_planes(x, g, 0.0f);
  static thread_local std::vector<float> column_counts;
  column_counts.resize(g.ow);
  for (int64_t q = 0; q < g.ow; ++q)
    column_counts[q] = (float)average_taps(q, g.sw, g.pl, g.kw, g.dw, g.w, g.pr, count_include_pad);
  const int64_t count = g.kh * g.kw, ow = g.ow;
  const float* columns = column_counts.data();
  for (int64_t r = 0; r < g.oh; ++r) {
    const float* __restrict in = p.planes + r * p.w2;
    float* __restrict out = y + r * ow;
    const float rows = (float)average_taps(r, g.sh, g.pt, g.kh, g.dh, g.h, g.pb, count_include_pad);
    for (int64_t q = 0; q < ow; ++q) out[q] = 0.0f;
    for (int64_t k = 0; k < count; ++k) {
      const float* __restrict from = in + p.taps[k];
#pragma omp simd
      for (int64_t q = 0; q < ow; ++q) out[q] += from[q];
    }
#pragma omp simd
    for (int64_t q = 0; q < ow; ++q) out[q] = out[q] / (rows * columns[q]);
  }
}

}  // namespace sdflow_kernels
