// Direct convolution on pre-packed weights (float32, one group, 1-D or 2-D), no im2col matrix and no BLAS packing
// per call, in three forms (lowering, codegen/lowering/conv_direct.py, packs the weights once and picks one):
// - conv_direct: weights as blocks of 8 output channels, [ceil(M / 8)][C * KH * KW][8]. A register tile of 8 output
//   channels x 48 output positions (24 AVX-512 accumulators) walks the C * KH * KW taps: per tap, three vector
//   loads of the (zero-padded) image through a table of tap offsets and 8 broadcast weights. The positions run over
//   the padded image's rows as one flat range (the columns past each row's end are computed and dropped), so small
//   images (7x7) still fill whole tiles. A strided convolution first splits the padded image into stride x stride
//   phase planes, over which it is a stride-1 convolution.
// - conv_direct_channels (small images with many taps): P positions of a row x up to 48 output channels (3
//   vectors of 16), weights as [ceil(M / 16)][C * KH * KW][16], one broadcast input per position and tap.
// - conv_winograd: Winograd F(2x2, 3x3) for 3x3 stride-1 convolutions, weights transformed once (G g G^T) as
//   [16][ceil(M / 8)][C][8]; 16 multiplications per 2x2 outputs instead of 36.
// - conv_pointwise_depthwise: a 1x1 convolution (packed as conv_direct's) and a depthwise convolution of its
//   output in one pass, the expanded tensor never written to memory.
// Each takes a bias (or null) and an epilogue (conv.h) applied to the outputs while they are in cache. Without
// AVX-512 the register kernels are the same loops in plain C++.
#pragma once

#include "conv.h"

namespace sdflow_kernels {
namespace direct {

constexpr int64_t TILE = 48;      // positions per tile: 8 channels x 3 vectors, 24 accumulators
constexpr int64_t TILE_MAX = 64;  // a last tile of up to 64 positions (see positions)
// Tiles over q positions: of TILE each, a remainder of up to TILE_MAX - TILE joining the last full one.
inline int64_t tiles(int64_t q) {
  const int64_t n = (q + TILE - 1) / TILE;
  return n > 1 && q - (n - 1) * TILE <= TILE_MAX - TILE ? n - 1 : n;
}
// Register tile: CH (8 or 4) output channels x NV vectors of 16 output positions, over K taps. Position j of the
// tile reads x + koff[k] + j at tap k; w points at the tile's first channel in the block's packed weights [K][8];
// the first `rows` channels are stored to y, ldy apart (the output planes, or a tile buffer). `tail`: the lanes of
// the last vector that are positions.
template <int CH, int NV>
inline void taps(const float* __restrict x, const int64_t* __restrict koff, int64_t K,
                 const float* __restrict w, float* __restrict y, int64_t ldy, int64_t rows, uint32_t tail) {
#ifdef __AVX512F__
  static_assert(NV >= 1 && NV <= 4 && CH * NV <= 24, "at most 24 accumulators");
  // One array per vector, every access by a constant index (loads, FMAs and the stores below): where one depended
  // on a run-time value (the rows to store) or the arrays were [CH][NV], gcc 12 kept the accumulators on the stack
  // in some inlining contexts, a store per accumulator and tap (2-3x slower; tests/codegen/test_kernels.py checks).
  __m512 a0[CH], a1[CH], a2[CH], a3[CH];
  for (int i = 0; i < CH; ++i) a0[i] = a1[i] = a2[i] = a3[i] = _mm512_setzero_ps();
  const __mmask16 last = (__mmask16)tail;
  for (int64_t k = 0; k < K; ++k) {
    const float* xk = x + koff[k];
    const __m512 x0 = NV == 1 ? _mm512_maskz_loadu_ps(last, xk) : _mm512_loadu_ps(xk);
    __m512 x1 = x0, x2 = x0, x3 = x0;
    if constexpr (NV > 1) x1 = NV == 2 ? _mm512_maskz_loadu_ps(last, xk + 16) : _mm512_loadu_ps(xk + 16);
    if constexpr (NV > 2) x2 = NV == 3 ? _mm512_maskz_loadu_ps(last, xk + 32) : _mm512_loadu_ps(xk + 32);
    if constexpr (NV > 3) x3 = _mm512_maskz_loadu_ps(last, xk + 48);
#pragma GCC unroll 8
    for (int i = 0; i < CH; ++i) {
      const __m512 b = _mm512_set1_ps(w[k * 8 + i]);
      a0[i] = _mm512_fmadd_ps(b, x0, a0[i]);
      if constexpr (NV > 1) a1[i] = _mm512_fmadd_ps(b, x1, a1[i]);
      if constexpr (NV > 2) a2[i] = _mm512_fmadd_ps(b, x2, a2[i]);
      if constexpr (NV > 3) a3[i] = _mm512_fmadd_ps(b, x3, a3[i]);
    }
  }
  // Stores by constant indices only: all CH rows, into y or (a last block of fewer channels) a local tile first.
  alignas(64) float partial[CH][NV * 16];
  float* out = rows == CH ? y : &partial[0][0];
  const int64_t ld = rows == CH ? ldy : NV * 16;
#pragma GCC unroll 8
  for (int i = 0; i < CH; ++i) {
    float* row = out + i * ld;
    if constexpr (NV == 1) _mm512_mask_storeu_ps(row, last, a0[i]);
    if constexpr (NV > 1) _mm512_storeu_ps(row, a0[i]);
    if constexpr (NV == 2) _mm512_mask_storeu_ps(row + 16, last, a1[i]);
    if constexpr (NV > 2) _mm512_storeu_ps(row + 16, a1[i]);
    if constexpr (NV == 3) _mm512_mask_storeu_ps(row + 32, last, a2[i]);
    if constexpr (NV > 3) _mm512_storeu_ps(row + 32, a2[i]);
    if constexpr (NV == 4) _mm512_mask_storeu_ps(row + 48, last, a3[i]);
  }
  if (rows != CH)
    for (int64_t i = 0; i < rows; ++i)
      for (int64_t j = 0; j < (NV - 1) * 16 + __builtin_popcount(tail); ++j) y[i * ldy + j] = partial[i][j];
#else
  const int64_t n = (NV - 1) * 16 + __builtin_popcount(tail);
  float acc[CH][NV * 16] = {};
  for (int64_t k = 0; k < K; ++k) {
    const float* xk = x + koff[k];
    for (int i = 0; i < CH; ++i) {
      const float b = w[k * 8 + i];
      for (int64_t j = 0; j < n; ++j) acc[i][j] += b * xk[j];
    }
  }
  for (int64_t i = 0; i < rows; ++i)
    for (int64_t j = 0; j < n; ++j) y[i * ldy + j] = acc[i][j];
#endif
}
// The last R (<= 8) of a tile's positions with vectors over its 8 channels: per tap one load of the 8 weights and
// one broadcast of each position's input; lane i of sum j goes to y[i * ldy + j].
template <int R>
inline void remainder(const float* __restrict x, const int64_t* __restrict koff, int64_t K,
                      const float* __restrict w, float* __restrict y, int64_t ldy, int64_t rows) {
#ifdef __AVX512F__
  __m256 acc[R];
  for (int j = 0; j < R; ++j) acc[j] = _mm256_setzero_ps();
  for (int64_t k = 0; k < K; ++k) {
    const __m256 wk = _mm256_loadu_ps(w + k * 8);
    const float* xk = x + koff[k];
    for (int j = 0; j < R; ++j) acc[j] = _mm256_fmadd_ps(wk, _mm256_set1_ps(xk[j]), acc[j]);
  }
  alignas(32) float lanes[R][8];
  for (int j = 0; j < R; ++j) _mm256_store_ps(lanes[j], acc[j]);
  for (int64_t i = 0; i < rows; ++i)
    for (int j = 0; j < R; ++j) y[i * ldy + j] = lanes[j][i];
#else
  float acc[R][8] = {};
  for (int64_t k = 0; k < K; ++k)
    for (int j = 0; j < R; ++j)
      for (int i = 0; i < 8; ++i) acc[j][i] += w[k * 8 + i] * x[koff[k] + j];
  for (int64_t i = 0; i < rows; ++i)
    for (int j = 0; j < R; ++j) y[i * ldy + j] = acc[j][i];
#endif
}
// count <= TILE_MAX consecutive positions from x into `rows` <= 8 channels of y, ldy apart (see taps). 49-56
// positions (a 7x7 image's single tile, 14x14's last one) run as the 8 x 48 tile plus `remainder` for the rest
// (MobileNetV2's 960->320 and 320->1280 1x1 layers over 7x7: 0.32 -> 0.26 and 0.36 -> 0.29 ms per layer); 57-64
// as two halves of 4 channels x 4 vectors: one tile reads each weight once, where 48 + a 16-lane tile of 8
// accumulators ran at half the rate (ResNet-18's 512-channel 7x7 convolutions: 84 -> 120 GFLOP/s per core).
inline void positions(const float* x, const int64_t* koff, int64_t K, const float* w, float* y, int64_t ldy,
                      int64_t rows, int64_t count) {
  const uint32_t tail = count % 16 ? (1u << (count % 16)) - 1 : 0xFFFFu;
  if (count > 48 && count <= 56) {
    taps<8, 3>(x, koff, K, w, y, ldy, rows, 0xFFFFu);
    switch (count - 48) {
      case 1: remainder<1>(x + 48, koff, K, w, y + 48, ldy, rows); break;
      case 2: remainder<2>(x + 48, koff, K, w, y + 48, ldy, rows); break;
      case 3: remainder<3>(x + 48, koff, K, w, y + 48, ldy, rows); break;
      case 4: remainder<4>(x + 48, koff, K, w, y + 48, ldy, rows); break;
      case 5: remainder<5>(x + 48, koff, K, w, y + 48, ldy, rows); break;
      case 6: remainder<6>(x + 48, koff, K, w, y + 48, ldy, rows); break;
      case 7: remainder<7>(x + 48, koff, K, w, y + 48, ldy, rows); break;
      default: remainder<8>(x + 48, koff, K, w, y + 48, ldy, rows); break;
    }
  } else if (count > 48) {
    taps<4, 4>(x, koff, K, w, y, ldy, rows < 4 ? rows : 4, tail);
    if (rows > 4) taps<4, 4>(x, koff, K, w + 4, y + 4 * ldy, ldy, rows - 4, tail);
  } else if (count > 32) {
    taps<8, 3>(x, koff, K, w, y, ldy, rows, tail);
  } else if (count > 16) {
    taps<8, 2>(x, koff, K, w, y, ldy, rows, tail);
  } else {
    taps<8, 1>(x, koff, K, w, y, ldy, rows, tail);
  }
}
// Register tile with vectors over output channels: P consecutive positions x NC blocks of 16 output channels
// (P * NC <= 24 accumulators). Position p reads x + koff[k] + p at tap k (one broadcast), block v's weights are
// w + v * wstride + k * 16 (64-byte aligned). The sums go to out[p * 48 + v * 16 + j] (channel j of block v).
// Every lane is an output channel, where a position vector of a 7x7 image fills 49 of 64 lanes.
template <int P, int NC>
void channels(const float* __restrict x, const int64_t* __restrict koff, int64_t K,
              const float* __restrict w, int64_t wstride, float* __restrict out) {
#ifdef __AVX512F__
  __m512 acc[P][NC];
  for (int p = 0; p < P; ++p)
    for (int v = 0; v < NC; ++v) acc[p][v] = _mm512_setzero_ps();
  for (int64_t k = 0; k < K; ++k) {
    const float* xk = x + koff[k];
    __m512 wv[NC];
    for (int v = 0; v < NC; ++v) wv[v] = _mm512_load_ps(w + v * wstride + k * 16);
    for (int p = 0; p < P; ++p) {
      const __m512 b = _mm512_set1_ps(xk[p]);
      for (int v = 0; v < NC; ++v) acc[p][v] = _mm512_fmadd_ps(b, wv[v], acc[p][v]);
    }
  }
  for (int p = 0; p < P; ++p)
    for (int v = 0; v < NC; ++v) _mm512_store_ps(out + p * 48 + v * 16, acc[p][v]);
#else
  float acc[P][NC * 16] = {};
  for (int64_t k = 0; k < K; ++k)
    for (int p = 0; p < P; ++p) {
      const float b = x[koff[k] + p];
      for (int v = 0; v < NC; ++v)
        for (int j = 0; j < 16; ++j) acc[p][v * 16 + j] += b * w[v * wstride + k * 16 + j];
    }
  for (int p = 0; p < P; ++p)
    for (int j = 0; j < NC * 16; ++j) out[p * 48 + j] = acc[p][j];
#endif
}
typedef void (*channels_kernel)(const float*, const int64_t*, int64_t, const float*, int64_t, float*);
// channels<P, NC> for 1 <= P <= 8, 1 <= NC <= 3.
inline channels_kernel channels_for(int64_t P, int64_t NC) {
  static const channels_kernel table[8][3] = {
      {channels<1, 1>, channels<1, 2>, channels<1, 3>}, {channels<2, 1>, channels<2, 2>, channels<2, 3>},
      {channels<3, 1>, channels<3, 2>, channels<3, 3>}, {channels<4, 1>, channels<4, 2>, channels<4, 3>},
      {channels<5, 1>, channels<5, 2>, channels<5, 3>}, {channels<6, 1>, channels<6, 2>, channels<6, 3>},
      {channels<7, 1>, channels<7, 2>, channels<7, 3>}, {channels<8, 1>, channels<8, 2>, channels<8, 3>}};
  return table[P - 1][NC - 1];
}

// With few taps (1x1 convolutions from few channels, whose time goes into writing the outputs), the tasks are runs
// of tiles over all channel blocks with the blocks outermost: the tiles of one block write 8 output planes one
// after another (streams the prefetcher follows), where a tile of every block wrote to all M planes at once
// (MobileNetV2's 16 -> 96 expansion over 112x112 took twice ONNX Runtime's time).
constexpr int64_t FEW_TAPS = 64;

// The image of a convolution as conv_direct and conv_direct_channels read it: zero-padded, as sh x sw phase planes
// of h2 x w2 (stride 1: one plane, the padded image; no padding and stride 1: x itself); phase (a, b) holds the
// padded pixels (i * sh + a, j * sw + b), so a strided convolution reads each phase with stride 1 and every tap is
// a run of consecutive floats. koff: each tap's offset in it; q: the flat range of positions over the phase
// planes' rows, q -> output (q / w2, q % w2) when q % w2 < ow.
struct PhaseSource {
  const float* data;
  int64_t h2, w2, plane2, phases, q;
  const int64_t* koff;
};

inline PhaseSource phase_source(const float* x, const ConvGeometry& g) {
  const int64_t hp = g.h + g.pt + g.pb, wp = g.w + g.pl + g.pr;
  PhaseSource s{x, (hp + g.sh - 1) / g.sh, (wp + g.sw - 1) / g.sw, 0, g.sh * g.sw, 0, nullptr};
  s.plane2 = s.h2 * s.w2;
  static thread_local std::vector<float> padded;  // the caller's; the workers only write into it
  if (g.pt || g.pb || g.pl || g.pr || s.phases > 1) {
    const int64_t planes = g.n * g.c * s.phases;
    if (padded.size() < (size_t)(planes * s.plane2)) padded.resize(planes * s.plane2);
    float* pad = padded.data();
#pragma omp parallel for
    for (int64_t plane = 0; plane < planes; ++plane) {
      const int64_t phase = plane % s.phases;
      pad_phase(x + (plane / s.phases) * g.h * g.w, g.h, g.w, g.pt, g.pl, g.sh, g.sw, phase / g.sw, phase % g.sw,
                s.h2, s.w2, pad + plane * s.plane2);
    }
    s.data = pad;
  }
  static thread_local std::vector<int64_t> taps;
  taps.resize(g.c * g.kh * g.kw);
  for (int64_t c = 0; c < g.c; ++c)
    for (int64_t i = 0; i < g.kh; ++i)
      for (int64_t j = 0; j < g.kw; ++j)
        taps[(c * g.kh + i) * g.kw + j] =
            c * s.phases * s.plane2 + phase_offset(i * g.dh, j * g.dw, g.sh, g.sw, s.h2, s.w2);
  s.koff = taps.data();
  // The last position read is the last output's: columns after it would read past the image.
  s.q = g.oh > 0 && g.ow > 0 ? (g.oh - 1) * s.w2 + g.ow : 0;
  return s;
}

}  // namespace direct

// Position vectors: tiles of 48 positions (the last up to 64) x blocks of 8 output channels; each tile is stored
// as row segments, the epilogue running on each while it is in cache. packed: [ceil(M / 8)][C * KH * KW][8].
// Tasks: (sample and tile, group of channel blocks), or with few taps (run of tiles, all blocks), blocks outermost.
template <class E>
void conv_direct(const float* x, const float* packed, const float* bias, float* y, const ConvGeometry& g,
                 const E& e) {
  using direct::TILE;
  using direct::TILE_MAX;
  const direct::PhaseSource s = direct::phase_source(x, g);
  const int64_t kk = g.taps(), p = g.plane(), q = s.q, w2 = s.w2, ow = g.ow, mblocks = (g.m + 7) / 8;
  const int64_t tiles = direct::tiles(q);
  const int64_t threads = omp_get_max_threads();
  const bool few_taps = kk <= direct::FEW_TAPS;
  int64_t groups = 1;
  while (!few_taps && g.n * tiles * groups < 4 * threads && groups < mblocks) groups *= 2;
  groups = std::min(groups, mblocks);
  const int64_t per_group = (mblocks + groups - 1) / groups;
  const int64_t run = few_taps ? std::max<int64_t>(1, (g.n * tiles) / (4 * threads)) : 1;
  const int64_t runs = (g.n * tiles + run - 1) / run;
#pragma omp parallel for schedule(dynamic)
  for (int64_t t = 0; t < runs * groups; ++t) {
    const int64_t first = (t / groups) * run, last = std::min(g.n * tiles, first + run), group = t % groups;
    const int64_t mb0 = group * per_group, mb1 = std::min(mblocks, (group + 1) * per_group);
    alignas(64) float tile[8 * TILE_MAX];
    // Channel blocks [b0, b1) of tile f (sample f / tiles).
    auto blocks_of_tile = [&](int64_t f, int64_t b0, int64_t b1) {
      const int64_t n = f / tiles, tile_index = f % tiles;
      const int64_t q0 = tile_index * TILE, count = tile_index == tiles - 1 ? q - q0 : TILE;
      const float* xt = s.data + n * g.c * s.phases * s.plane2 + q0;
      // The tile's row segments: offset in the tile, output position, length.
      int64_t segments = 0, from[TILE_MAX], at[TILE_MAX], length[TILE_MAX];
      if (w2 == ow) {  // no padding columns (1x1): the tile is one run of outputs
        segments = 1, from[0] = 0, at[0] = q0, length[0] = count;
      } else {  // one division per tile, not per row (this runs once per tile and channel block)
        int64_t row = q0 / w2, column = q0 - row * w2;
        for (int64_t i = q0; i < q0 + count; ++row, column = 0) {
          const int64_t row_end = std::min(q0 + count, (row + 1) * w2);
          const int64_t valid = std::min(row_end - i, ow - column);
          if (valid > 0) {
            const int64_t here = row * ow + column;
            if (segments > 0 && at[segments - 1] + length[segments - 1] == here &&
                from[segments - 1] + length[segments - 1] == i - q0) {
              length[segments - 1] += valid;  // rows without padding columns continue the previous run
            } else {
              from[segments] = i - q0, at[segments] = here, length[segments] = valid;
              ++segments;
            }
          }
          i = row_end;
        }
      }
      // A tile that is one run of outputs (unpadded 1x1 convolutions, or inside a row) is stored straight into the
      // output planes; others go through a buffer, row segment by row segment.
      const bool whole = segments == 1 && length[0] == count;
      for (int64_t mb = b0; mb < b1; ++mb) {
        const int64_t rows = std::min<int64_t>(8, g.m - mb * 8);
        const float* w = packed + mb * kk * 8;
        if (whole)
          direct::positions(xt, s.koff, kk, w, y + (n * g.m + mb * 8) * p + at[0], p, rows, count);
        else
          direct::positions(xt, s.koff, kk, w, tile, TILE_MAX, rows, count);
        for (int64_t m = mb * 8; m < mb * 8 + rows; ++m) {
          float* out = y + (n * g.m + m) * p;
          const float* values = tile + (m - mb * 8) * TILE_MAX;
          for (int64_t k = 0; k < segments; ++k) {
            if (whole)  // stored in place by the kernel
              store_run(out, at[k], out + at[k], 1, length[k], n, m, bias, e);
            else  // from the tile buffer, the epilogue applied on the way
              store_run(out, at[k], values + from[k], 1, length[k], n, m, bias, e);
          }
        }
      }
    };
    if (few_taps) {
      for (int64_t mb = mb0; mb < mb1; ++mb)
        for (int64_t f = first; f < last; ++f) blocks_of_tile(f, mb, mb + 1);
    } else {
      for (int64_t f = first; f < last; ++f) blocks_of_tile(f, mb0, mb1);
    }
  }
}

// Vectors over output channels (small images: output rows of at most 14, or 1x1 convolutions of small planes);
// packed: blocks of 16 output channels, [ceil(M / 16)][C * KH * KW][16]. Tasks: (channel tile of 3 blocks, sample, output row, chunk of at most 8
// positions of the row), channel tile outermost so that the tasks running together share its weights. The
// positions of a chunk are consecutive in the (phase planes') rows and in the output plane; each channel's run is
// stored and its epilogue applied while in cache.
template <class E>
void conv_direct_channels(const float* x, const float* packed, const float* bias, float* y, const ConvGeometry& g,
                          const E& e) {
  const direct::PhaseSource s = direct::phase_source(x, g);
  // A 1x1 convolution without padding or strides reads and writes each plane as one row: chunks of 8 positions
  // instead of a plane's short rows (2-4 positions on MNASNet's last planes).
  const bool flat = g.pointwise();
  const int64_t kk = g.taps(), p = g.plane(), oh = flat ? 1 : g.oh, ow = flat ? p : g.ow, w2 = flat ? p : s.w2;
  const int64_t mb16 = (g.m + 15) / 16, mt = (mb16 + 2) / 3;
  const int64_t chunks = (ow + 7) / 8, per_chunk = chunks > 0 ? (ow + chunks - 1) / chunks : 0;
  const int64_t row_tasks = g.n * oh * chunks;
#pragma omp parallel for schedule(dynamic)
  for (int64_t t = 0; t < mt * row_tasks; ++t) {
    const int64_t tile = t / row_tasks, n = (t % row_tasks) / (oh * chunks);
    const int64_t r = (t % (oh * chunks)) / chunks, ow0 = (t % chunks) * per_chunk;
    const int64_t count = std::min(per_chunk, ow - ow0), blocks = std::min<int64_t>(3, mb16 - tile * 3);
    if (count <= 0) continue;
    alignas(64) float sums[8 * 48];
    direct::channels_for(count, blocks)(s.data + n * g.c * s.phases * s.plane2 + r * w2 + ow0, s.koff, kk,
                                        packed + tile * 3 * kk * 16, kk * 16, sums);
    for (int64_t m = tile * 48; m < std::min(g.m, tile * 48 + blocks * 16); ++m)
      store_run(y + (n * g.m + m) * p, r * ow + ow0, sums + (m - tile * 48), 48, count, n, m, bias, e);
  }
}

// Winograd F(2x2, 3x3) (3x3, stride 1, no dilation); packed: the transformed weights [16][ceil(M / 8)][C][8]. The
// zero-padded image is split into 2 x 2 phase planes of h2 x w2, so that element (u, v) of the 4x4 input patch of
// output tile (i, j) - padded pixel (2i + u, 2j + v) - is pixel (i + u / 2, j + v / 2) of phase (u % 2, v % 2):
// for consecutive tiles of a row, consecutive floats. The tiles run as one flat range over the phase planes' rows
// (tiles past a row's end are computed and dropped). Tasks: (sample, block of 48 tiles, group of 8-channel
// blocks). Per task: the input transform V = B^T d B of every channel into [16][C][48]; per channel block 16
// products (the 16 elements (u, v)) of its transformed weights [C][8] with V's [C][48], each the direct kernel's
// register tile with the channels as taps; the output transform A^T m A into 2 x 2 outputs per tile, stored by row
// segments with the epilogue.
template <class E>
void conv_winograd(const float* x, const float* packed, const float* bias, float* y, const ConvGeometry& g,
                   const E& e) {
  constexpr int64_t TB = direct::TILE;
  const int64_t c = g.c, oh = g.oh, ow = g.ow, p = g.plane(), mblocks = (g.m + 7) / 8;
  const int64_t oh2 = (oh + 1) / 2, ow2 = (ow + 1) / 2, h2 = oh2 + 1, w2 = ow2 + 1, plane2 = h2 * w2;
  static thread_local std::vector<float> padded;  // the caller's; the workers only write into it
  // Slack past the last plane: the last vector of a block reads up to 15 lanes past its tiles.
  const size_t padded_size = (size_t)(g.n * c * 4 * plane2 + w2 + 32);
  if (padded.size() < padded_size) padded.resize(padded_size);
  float* pad = padded.data();
#pragma omp parallel for
  for (int64_t plane = 0; plane < g.n * c * 4; ++plane) {
    const int64_t phase = plane % 4;
    pad_phase(x + (plane / 4) * g.h * g.w, g.h, g.w, g.pt, g.pl, 2, 2, phase / 2, phase % 2, h2, w2,
              pad + plane * plane2);
  }
  static thread_local std::vector<int64_t> channels;  // channel k of V at k * TB: the "taps" of the products
  channels.resize(c);
  for (int64_t k = 0; k < c; ++k) channels[k] = k * TB;
  const int64_t* koff = channels.data();
  const int64_t tq = oh2 > 0 && ow2 > 0 ? (oh2 - 1) * w2 + ow2 : 0;
  // Blocks of 48 tiles, the last one shorter: a last block of 49-64 (the direct kernel's 4 x 4 vectors) measured
  // slower here, its 16 products each reading V twice.
  const int64_t blocks = (tq + TB - 1) / TB;
  const int64_t threads = omp_get_max_threads();
  int64_t groups = 1;
  while (g.n * blocks * groups < 4 * threads && groups < mblocks) groups *= 2;
  groups = std::min(groups, mblocks);
  const int64_t per_group = (mblocks + groups - 1) / groups;
#pragma omp parallel
  {
    static thread_local std::vector<float> transformed;  // V, per thread
    if (transformed.size() < (size_t)(16 * c * TB)) transformed.resize(16 * c * TB);
    float* V = transformed.data();
#pragma omp for schedule(dynamic)
    for (int64_t t = 0; t < g.n * blocks * groups; ++t) {
      const int64_t n = t / (blocks * groups), q0 = ((t / groups) % blocks) * TB, group = t % groups;
      const int64_t count = std::min(TB, tq - q0);
      const int64_t lanes = (count + 15) / 16 * 16;
      const float* image = pad + n * c * 4 * plane2 + q0;
      for (int64_t k = 0; k < c; ++k) {
        const float* phase[4];
        for (int64_t f = 0; f < 4; ++f) phase[f] = image + (k * 4 + f) * plane2;
        float* v = V + k * TB;
#pragma omp simd
        for (int64_t j = 0; j < lanes; ++j) {
          float d[4][4], bd[4][4];
          for (int u = 0; u < 4; ++u)
            for (int l = 0; l < 4; ++l) d[u][l] = phase[(u % 2) * 2 + l % 2][(u / 2) * w2 + l / 2 + j];
          for (int l = 0; l < 4; ++l) {  // B^T d
            bd[0][l] = d[0][l] - d[2][l], bd[1][l] = d[1][l] + d[2][l];
            bd[2][l] = d[2][l] - d[1][l], bd[3][l] = d[1][l] - d[3][l];
          }
          for (int u = 0; u < 4; ++u) {  // (B^T d) B
            v[(u * 4 + 0) * c * TB + j] = bd[u][0] - bd[u][2];
            v[(u * 4 + 1) * c * TB + j] = bd[u][1] + bd[u][2];
            v[(u * 4 + 2) * c * TB + j] = bd[u][2] - bd[u][1];
            v[(u * 4 + 3) * c * TB + j] = bd[u][1] - bd[u][3];
          }
        }
      }
      // The block's row segments, per output row of its tiles: offset in the block's outputs, output position,
      // length.
      int64_t segments = 0, from[2 * TB + 2], at[2 * TB + 2], length[2 * TB + 2];
      for (int64_t i = q0; i < q0 + count;) {
        const int64_t row = i / w2, column = i - row * w2;
        const int64_t row_end = std::min(q0 + count, (row + 1) * w2);
        const int64_t tiles = std::min(row_end - i, ow2 - column);
        for (int64_t r = 0; r < 2 && tiles > 0; ++r) {
          if (2 * row + r >= oh) break;
          from[segments] = r * 2 * TB + 2 * (i - q0);
          at[segments] = (2 * row + r) * ow + 2 * column;
          length[segments] = std::min(2 * tiles, ow - 2 * column);
          ++segments;
        }
        i = row_end;
      }
      alignas(64) float products[16 * 8 * TB];
      alignas(64) float outputs[8 * 4 * TB];
      for (int64_t mb = group * per_group; mb < std::min(mblocks, (group + 1) * per_group); ++mb) {
        const int64_t rows = std::min<int64_t>(8, g.m - mb * 8);
        for (int64_t k = 0; k < 16; ++k)
          direct::positions(V + k * c * TB, koff, c, packed + (k * mblocks + mb) * c * 8, products + k * 8 * TB, TB,
                            8, count);
        for (int64_t i = 0; i < rows; ++i) {
          const float* mi = products + i * TB;
          float* o = outputs + i * 4 * TB;
#pragma omp simd
          for (int64_t j = 0; j < count; ++j) {  // A^T m A
            float sa[2][4];
            for (int l = 0; l < 4; ++l) {
              const float m0 = mi[(0 + l) * 8 * TB + j], m1 = mi[(4 + l) * 8 * TB + j];
              const float m2 = mi[(8 + l) * 8 * TB + j], m3 = mi[(12 + l) * 8 * TB + j];
              sa[0][l] = m0 + m1 + m2;
              sa[1][l] = m1 - m2 - m3;
            }
            for (int r = 0; r < 2; ++r) {
              o[r * 2 * TB + 2 * j] = sa[r][0] + sa[r][1] + sa[r][2];
              o[r * 2 * TB + 2 * j + 1] = sa[r][1] - sa[r][2] - sa[r][3];
            }
          }
        }
        for (int64_t m = mb * 8; m < mb * 8 + rows; ++m) {
          float* out = y + (n * g.m + m) * p;
          const float* values = outputs + (m - mb * 8) * 4 * TB;
          for (int64_t k = 0; k < segments; ++k) store_run(out, at[k], values + from[k], 1, length[k], n, m, bias, e);
        }
      }
    }
  }
}

// A 1x1 convolution (x [N][cx][H][W] -> the expanded tensor of g.c channels, packed as conv_direct's weights, then
// bias1 and e1) and a depthwise convolution of its result (g: its geometry over the expanded tensor; w2
// [g.m][1][KH][KW], then bias2 and e2) into y, as one kernel (fuse-conv-depthwise): per task (sample, block of 8
// expanded channels) the direct kernel's register tiles write the block's 8 planes into a per-thread buffer, bias1
// and e1 are applied there, and depthwise_rows runs the depthwise convolution of each plane from the buffer into
// the output. The expanded tensor never goes to memory: at most 8 planes of it exist at a time, per thread
// (MobileNetV2's 16 -> 96 expansion over 112x112: 400 KB in L2 instead of 4.8 MB written and read back).
template <class E1, class E2>
void conv_pointwise_depthwise(const float* x, int64_t cx, const float* packed, const float* bias1, const E1& e1,
                              const float* w2, const float* bias2, float* y, const ConvGeometry& g, const E2& e2) {
  using direct::TILE;
  const int64_t p1 = g.h * g.w, p = g.plane(), mg = g.m / g.c, mblocks = (g.c + 7) / 8;
  static thread_local std::vector<int64_t> taps;
  taps.resize(cx);
  for (int64_t k = 0; k < cx; ++k) taps[k] = k * p1;
  const int64_t* koff = taps.data();
  const int64_t tiles = std::max<int64_t>(1, direct::tiles(p1));
#pragma omp parallel
  {
    const int64_t rows = depthwise_block_rows(g);
    static thread_local std::vector<float> planes_buffer, acc_buffer;
    if (planes_buffer.size() < (size_t)(8 * p1)) planes_buffer.resize(8 * p1);
    if (acc_buffer.size() < (size_t)(rows * g.ow)) acc_buffer.resize(rows * g.ow);
    float* planes = planes_buffer.data();
    float* acc = acc_buffer.data();
    const int64_t run = std::max<int64_t>(1, g.n * mblocks / (8 * omp_get_num_threads()));  // ~8 runs per thread
#pragma omp for schedule(dynamic, run)
    for (int64_t t = 0; t < g.n * mblocks; ++t) {
      const int64_t n = t / mblocks, mb = t % mblocks, channels = std::min<int64_t>(8, g.c - mb * 8);
      const float* xn = x + n * cx * p1;
      const float* w = packed + mb * cx * 8;
      for (int64_t tile = 0; tile < tiles; ++tile) {
        const int64_t q0 = tile * TILE, count = tile == tiles - 1 ? p1 - q0 : TILE;
        direct::positions(xn + q0, koff, cx, w, planes + q0, p1, channels, count);
      }
      for (int64_t i = 0; i < channels; ++i) {
        float* image = planes + i * p1;
        store_run(image, 0, image, 1, p1, n, mb * 8 + i, bias1, e1);  // the 1x1 convolution's bias and epilogue
        for (int64_t j = 0; j < mg; ++j) {
          const int64_t m = (mb * 8 + i) * mg + j;
          depthwise_plane_rows<DepthwiseWindow<0, 0, 0>>(image, w2 + m * g.kh * g.kw, acc, y + (n * g.m + m) * p,
                                                         rows, n, m, bias2, g, e2);
        }
      }
    }
  }
}

}  // namespace sdflow_kernels
