"""Conv (float32: the direct kernel of ``conv_direct`` where lowering packed the weights; otherwise im2col + BLAS
GEMM in per-thread tiles; depthwise planes); MaxPool, AveragePool and LpPool (1-3 spatial dims, parallel over
planes)."""
from __future__ import annotations

from dace.libraries.blas.environments.openblas import OpenBLAS

from sdflow.ir.errors import CompileError
from sdflow.ir.ops.nn import DEPTHWISE_ROW_WIDTH, Conv, conv_transpose_geometry, is_pointwise, window_geometry
from .. import threads
from ..options import KernelOptions
from ._expansion import Ctx, add_map, cexpr, expansion, index_ranges, product
from .conv_direct import DIRECT_INCLUDES, PACKED_CONNECTOR, direct_code


def _geometry_constants(node, x_shape, kernel, ceil_mode=False) -> str:
    """C++ constants N C H W KH KW SH SW DH DW PT PL PB PR OH OW (1-D inputs as H = 1)."""
    geo = window_geometry(node, list(x_shape[2:]), kernel, ceil_mode)
    if len(kernel) == 1:
        values = dict(H=1, W=x_shape[2], KH=1, KW=kernel[0], SH=1, SW=geo.strides[0], DH=1, DW=geo.dilations[0],
                      PT=0, PL=geo.pads_begin[0], PB=0, PR=geo.pads_end[0], OH=1, OW=geo.out[0])
    else:
        values = dict(H=x_shape[2], W=x_shape[3], KH=kernel[0], KW=kernel[1], SH=geo.strides[0], SW=geo.strides[1],
                      DH=geo.dilations[0], DW=geo.dilations[1], PT=geo.pads_begin[0], PL=geo.pads_begin[1],
                      PB=geo.pads_end[0], PR=geo.pads_end[1], OH=geo.out[0], OW=geo.out[1])
    values = dict(N=x_shape[0], C=x_shape[1], **values)
    # Every C++ local ends with '_': symbol names never do (ir.types.make_symbol), so they cannot collide.
    return "const int64_t " + ", ".join(f"{k}_ = {cexpr(v)}" for k, v in values.items()) + ";\n"


# inside_(off_): the output columns [lo, hi) whose input column ow_ * SW_ + off_ lies inside the image (no
# padding), with hi >= lo (sdflow_conv::inside in CONV_INCLUDES).
_INSIDE = """
auto inside_ = [&](int64_t off_) { return sdflow_conv::inside(off_, SW_, OW_, W_); };
"""

# GEMM convolutions run as tiles, one per thread at a time: a tile is a block of output rows (whole rows of the
# image, ~384 positions) times a block of output channels; its im2col columns, its GEMM (BLAS called inside the
# parallel loop runs on the calling thread: OpenBLAS's OpenMP build checks omp_in_parallel) and its epilogue all
# stay in that core's cache. When there are fewer row blocks than threads (deep layers: 7x7 or 14x14 images), the
# output channels are split too and the im2col matrix of the (sample, group) is built once, in parallel, first.
# The row range [lo_, hi_) of an output row skips out-of-image columns by range (inside_), not by test.
_TILES = """
const int64_t threads_ = omp_get_max_threads();
const int64_t ROWS_ = std::max<int64_t>(1, std::min<int64_t>(OH_, 384 / OW_));
const int64_t TP_ = (OH_ + ROWS_ - 1) / ROWS_;
const bool shared_ = TP_ * N_ * G_ < 2 * threads_;
const int64_t TM_ = shared_
    ? std::max<int64_t>(1, std::min<int64_t>((MG_ + 15) / 16, (2 * threads_ + TP_ - 1) / TP_)) : 1;
const int64_t MB_ = (MG_ + TM_ - 1) / TM_;
auto im2col_ = [&](const float* image_, float* column_, int64_t ld_, int64_t oh0_, int64_t oh1_, int64_t r_) {
  const int64_t kw_ = r_ % KW_, kh_ = (r_ / KW_) % KH_, c_ = r_ / (KW_ * KH_);
  const float* plane_ = image_ + c_ * H_ * W_;
  float* row_ = column_ + r_ * ld_;
  const int64_t off_ = kw_ * DW_ - PL_;
  const auto [lo_, hi_] = inside_(off_);
  for (int64_t oh_ = oh0_; oh_ < oh1_; ++oh_) {
    const int64_t ih_ = oh_ * SH_ - PT_ + kh_ * DH_;
    float* out_ = row_ + (oh_ - oh0_) * OW_;
    if (ih_ < 0 || ih_ >= H_) { for (int64_t ow_ = 0; ow_ < OW_; ++ow_) out_[ow_] = 0.0f; continue; }
    const float* in_ = plane_ + ih_ * W_ + off_;
    for (int64_t ow_ = 0; ow_ < lo_; ++ow_) out_[ow_] = 0.0f;
    if (SW_ == 1) { for (int64_t ow_ = lo_; ow_ < hi_; ++ow_) out_[ow_] = in_[ow_]; }
    else { for (int64_t ow_ = lo_; ow_ < hi_; ++ow_) out_[ow_] = in_[ow_ * SW_]; }
    for (int64_t ow_ = hi_; ow_ < OW_; ++ow_) out_[ow_] = 0.0f;
  }
};
// One tile: output channels [m0_, m1_) of group g_, output rows [oh0_, oh1_) of sample n_, from columns whose
// first row starts at column_ (leading dimension ld_).
auto tile_ = [&](int64_t n_, int64_t g_, int64_t m0_, int64_t m1_, int64_t oh0_, int64_t oh1_,
                 const float* column_, int64_t ld_) {
  const int64_t p0_ = oh0_ * OW_, width_ = (oh1_ - oh0_) * OW_;
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m1_ - m0_, width_, KK_, 1.0f,
              Wt_ + (g_ * MG_ + m0_) * KK_, KK_, column_, ld_, 0.0f, Y_ + (n_ * M_ + g_ * MG_ + m0_) * P_ + p0_, P_);
  for (int64_t m_ = g_ * MG_ + m0_; m_ < g_ * MG_ + m1_; ++m_) {
    float* out_ = Y_ + (n_ * M_ + m_) * P_;
    TILE_EPILOGUE
  }
};
if (!shared_) {
  #pragma omp parallel
  {
    // Kept between calls (no allocation, no page faults per call); one per thread.
    static thread_local std::vector<float> buffer_;
    if (IM2COL_ && buffer_.size() < (size_t)(KK_ * ROWS_ * OW_)) buffer_.resize(KK_ * ROWS_ * OW_);
    #pragma omp for schedule(dynamic)
    for (int64_t t_ = 0; t_ < N_ * G_ * TP_; ++t_) {
      const int64_t n_ = t_ / (G_ * TP_), g_ = (t_ / TP_) % G_, oh0_ = (t_ % TP_) * ROWS_;
      const int64_t oh1_ = std::min(OH_, oh0_ + ROWS_);
      const float* image_ = X_ + (n_ * C_ + g_ * CG_) * H_ * W_;
      if (IM2COL_) {
        for (int64_t r_ = 0; r_ < KK_; ++r_) im2col_(image_, buffer_.data(), (oh1_ - oh0_) * OW_, oh0_, oh1_, r_);
        tile_(n_, g_, 0, MG_, oh0_, oh1_, buffer_.data(), (oh1_ - oh0_) * OW_);
      } else {
        tile_(n_, g_, 0, MG_, oh0_, oh1_, image_ + oh0_ * OW_, P_);
      }
    }
  }
} else {
  static thread_local std::vector<float> columns_of_caller_;
  if (IM2COL_ && columns_of_caller_.size() < (size_t)(KK_ * P_)) columns_of_caller_.resize(KK_ * P_);
  float* column_ = columns_of_caller_.data();  // the workers' own thread_local copies are empty
  for (int64_t n_ = 0; n_ < N_; ++n_)
    for (int64_t g_ = 0; g_ < G_; ++g_) {
      const float* image_ = X_ + (n_ * C_ + g_ * CG_) * H_ * W_;
      if (IM2COL_) {
        #pragma omp parallel for
        for (int64_t r_ = 0; r_ < KK_; ++r_) im2col_(image_, column_, P_, 0, OH_, r_);
      }
      const float* columns_ = IM2COL_ ? column_ : image_;
      #pragma omp parallel for schedule(dynamic)
      for (int64_t t_ = 0; t_ < TM_ * TP_; ++t_) {
        const int64_t m0_ = (t_ / TP_) * MB_, m1_ = std::min(MG_, m0_ + MB_), oh0_ = (t_ % TP_) * ROWS_;
        const int64_t oh1_ = std::min(OH_, oh0_ + ROWS_);
        if (m0_ < m1_) tile_(n_, g_, m0_, m1_, oh0_, oh1_, columns_ + oh0_ * OW_, P_);
      }
    }
}
"""


# One output plane per task (sample, channel). The input channel is first copied, zero-padded, into a per-thread
# buffer, so that no tap tests the image's bounds. Stride 1: the output positions run as one flat range over blocks
# of padded rows (the columns past each row's end are computed and dropped when the rows are stored); other strides:
# along each output row. The position loop is vectorised, each position's taps summed in a register.
_DEPTHWISE = """
const int64_t HP_ = H_ + PT_ + PB_, WP_ = W_ + PL_ + PR_;
#pragma omp parallel
{
  static thread_local std::vector<float> buffer_;
  const size_t need_ = (size_t)(HP_ * WP_ + std::max<int64_t>(1024 + WP_, OW_) + 16);
  if (buffer_.size() < need_) buffer_.resize(need_);
  float* __restrict padded_ = buffer_.data();
  float* __restrict acc_ = padded_ + HP_ * WP_;
  const int64_t run_ = std::max<int64_t>(1, N_ * M_ / (8 * omp_get_num_threads()));  // as in _DEPTHWISE_ROWS
  #pragma omp for schedule(dynamic, run_)
  for (int64_t plane_ = 0; plane_ < N_ * M_; ++plane_) {
    const int64_t n_ = plane_ / M_, m_ = plane_ % M_, c_ = m_ / MG_;
    const float* image_ = X_ + (n_ * C_ + c_) * H_ * W_;
    const float* kernel_ = Wt_ + m_ * KH_ * KW_;
    float* out_ = Y_ + plane_ * P_;
    sdflow_conv::pad_phase(image_, H_, W_, PT_, PL_, 1, 1, 0, 0, HP_, WP_, padded_);
    if (SH_ == 1 && SW_ == 1) {
      // Blocks of whole padded rows (~1024 positions), so that the sums stay in L1.
      const int64_t rows_ = std::max<int64_t>(1, 1024 / WP_);
      for (int64_t oh0_ = 0; oh0_ < OH_; oh0_ += rows_) {
        const int64_t oh1_ = std::min(OH_, oh0_ + rows_);
        const int64_t q0_ = oh0_ * WP_, count_ = (oh1_ - 1 - oh0_) * WP_ + OW_;
        // Vectorised over positions, every tap summed in a register (one store per output, not one per tap).
        sdflow_conv::flat_taps(padded_ + q0_, kernel_, acc_, count_, KH_, KW_, DH_, DW_, WP_);
        for (int64_t oh_ = oh0_; oh_ < oh1_; ++oh_) {  // the rows, the epilogue applied on the way
          const int64_t p0_ = oh_ * OW_, width_ = OW_, step_ = 1;
          const float* src_ = acc_ + (oh_ - oh0_) * WP_;
          STORE_EPILOGUE
        }
      }
    } else {
      for (int64_t oh_ = 0; oh_ < OH_; ++oh_) {
        const float* __restrict in_ = padded_ + oh_ * SH_ * WP_;
        float* __restrict row_ = out_ + oh_ * OW_;
        #pragma omp simd
        for (int64_t ow_ = 0; ow_ < OW_; ++ow_) {
          float sum_ = 0.0f;
          for (int64_t kh_ = 0; kh_ < KH_; ++kh_)
            for (int64_t kw_ = 0; kw_ < KW_; ++kw_)
              sum_ += kernel_[kh_ * KW_ + kw_] * in_[kh_ * DH_ * WP_ + ow_ * SW_ + kw_ * DW_];
          row_[ow_] = sum_;
        }
        const int64_t p0_ = oh_ * OW_;
        TILE_EPILOGUE
      }
    }
  }
}
"""


# One depthwise plane (image_ -> out_, channel m_ with kernel_) in blocks of rows_ output rows through acc_: what
# _DEPTHWISE_ROWS and _CONV_DEPTHWISE run per plane.
_PLANE_ROWS = """
for (int64_t oh0_ = 0; oh0_ < OH_; oh0_ += rows_) {
  const int64_t oh1_ = std::min(OH_, oh0_ + rows_);
  sdflow_conv::depthwise_rows(image_, kernel_, acc_, oh0_, oh1_, H_, W_, OW_, KH_, KW_, SH_, SW_, DH_, DW_, PT_, PL_);
  const int64_t p0_ = oh0_ * OW_, width_ = (oh1_ - oh0_) * OW_, step_ = 1;
  const float* src_ = acc_;
  STORE_EPILOGUE
}
"""

# Depthwise convolution (AVX-512, column stride 1 or 2): blocks of ~4096 outputs of a plane summed by
# sdflow_conv::depthwise_rows straight from the image (masked loads, no padded copy), then stored with bias and
# epilogue in one flat pass. Small planes (MobileNetV2's 14x14 and 7x7) cost no per-row overhead this way: the
# padded-plane kernel above spent more time copying and looping per plane than summing.
_DEPTHWISE_ROWS = """
#pragma omp parallel
{
  const int64_t rows_ = std::max<int64_t>(1, std::min<int64_t>(OH_, 4096 / std::max<int64_t>(OW_, 1)));
  static thread_local std::vector<float> buffer_;
  if (buffer_.size() < (size_t)(rows_ * OW_)) buffer_.resize(rows_ * OW_);
  float* __restrict acc_ = buffer_.data();
  // Runs of planes claimed as the threads get free (~8 runs per thread): the cores of a shared machine do not
  // always run at the same speed.
  const int64_t run_ = std::max<int64_t>(1, N_ * M_ / (8 * omp_get_num_threads()));
  #pragma omp for schedule(dynamic, run_)
  for (int64_t plane_ = 0; plane_ < N_ * M_; ++plane_) {
    const int64_t n_ = plane_ / M_, m_ = plane_ % M_, c_ = m_ / MG_;
    const float* image_ = X_ + (n_ * C_ + c_) * H_ * W_;
    const float* kernel_ = Wt_ + m_ * KH_ * KW_;
    float* out_ = Y_ + plane_ * P_;
    PLANE_ROWS
  }
}
"""


def uses_depthwise_rows(out_width, column_stride, implementation: str = "",
                        options: KernelOptions = KernelOptions()) -> bool:
    """Whether a float32 depthwise convolution runs as _DEPTHWISE_ROWS: on AVX-512, with a column stride of 2, or
    of 1 and output rows of at most DEPTHWISE_ROW_WIDTH (the option ``depthwise_rows=false``, or an op node's
    ``implementation`` naming ``depthwise-planes``, keeps the padded-plane kernel).
    Wider stride-1 rows run as fast as the padded plane's flat range (every lane a position; measured
    equal on MobileNetV2's 56x56 and 112x112 layers), narrow ones lost most of their time there to copying and
    looping per plane (7x7 and 14x14 planes: 2.8-3.2x faster this way, 28x28: 1.3x)."""
    if not threads.has_avx512() or column_stride > 2 or not options.depthwise_rows \
            or "depthwise-planes" in implementation.split("+"):
        return False
    return column_stride == 2 or (getattr(out_width, "is_number", True) and int(out_width) <= DEPTHWISE_ROW_WIDTH)


# Bias and epilogue on a run of outputs [p0_, p0_ + width_) of the plane out_ (sample n_, channel m_) whose values
# are src_[j_ * step_]: stored with the epilogue applied on the way (one pass over the outputs instead of a copy and
# an in-place pass).
_STORE_EPILOGUE = """
{
  const float b_ = BIAS;
  for (int64_t j_ = 0; j_ < width_; ++j_) {
    const int64_t p_ = p0_ + j_;
    const float a_ = src_[j_ * step_] + b_;
    STATEMENTS
    out_[p_] = FINAL;
  }
}
"""

# Bias and epilogue on one output plane (out_, sample n_, channel m_), in place: ``a_`` is the convolution's value.
_PLANE_EPILOGUE = """
{
  const float b_ = BIAS;
  for (int64_t p_ = FIRST; p_ < LAST; ++p_) {
    const float a_ = out_[p_] + b_;
    STATEMENTS
    out_[p_] = FINAL;
  }
}
"""

# What every convolution kernel's code may call (guarded: several kernels include it into one file).
CONV_INCLUDES = r"""
#ifndef SDFLOW_CONV_HELPERS
#define SDFLOW_CONV_HELPERS
#include <omp.h>
#include <algorithm>
#include <cstdint>
#include <limits>
#include <utility>
#include <vector>
#ifdef __AVX512F__
#include <immintrin.h>
#endif
namespace sdflow_conv {
// The j in [0, count) whose column j * stride + offset lies in [0, width), as [lo, hi) with hi >= lo: outside it
// a window position reads padding; inside it a loop has no branch and vectorises.
inline std::pair<int64_t, int64_t> inside(int64_t offset, int64_t stride, int64_t count, int64_t width) {
  const int64_t lo = offset >= 0 ? 0 : std::min(count, (-offset + stride - 1) / stride);
  const int64_t hi = width - 1 - offset < 0 ? lo : std::max(lo, std::min(count, (width - 1 - offset) / stride + 1));
  return {lo, hi};
}
// Phase (a, b) of an h x w image padded by pt rows and pl columns before it, at strides (sh, sw):
// to[i * w2 + j] = image[i * sh + a - pt][j * sw + b - pl], `fill` outside the image (0 for a convolution, -inf
// for MaxPool); `to` is h2 x w2. Not inlined: gcc 12 at -O3 miscompiled the copy inlined into a MaxPool tasklet
// whose sizes were all constants (dilation 2, pads 2: the rows after the top padding were left unwritten; correct
// at -O2 or with -fno-tree-loop-vectorize); it runs once per plane, so the call costs nothing.
__attribute__((noinline)) inline void pad_phase(const float* from, int64_t h, int64_t w, int64_t pt, int64_t pl, int64_t sh, int64_t sw,
                      int64_t a, int64_t b, int64_t h2, int64_t w2, float* to, float fill = 0.0f) {
  const auto [lo, hi] = inside(b - pl, sw, w2, w);
  for (int64_t i = 0; i < h2; ++i) {
    float* row = to + i * w2;
    const int64_t r = i * sh + a - pt;
    if (r < 0 || r >= h) { for (int64_t j = 0; j < w2; ++j) row[j] = fill; continue; }
    const float* in = from + r * w;
    for (int64_t j = 0; j < lo; ++j) row[j] = fill;
    for (int64_t j = lo; j < hi; ++j) row[j] = in[j * sw + b - pl];
    for (int64_t j = hi; j < w2; ++j) row[j] = fill;
  }
}
#ifdef __AVX512F__
// Lanes j of a 16-lane load starting at column c (of a row of width w) that lie inside the row.
inline __mmask16 row_lanes(int64_t c, int64_t w) {
  const int64_t lo = std::max<int64_t>(0, -c), hi = std::min<int64_t>(16, w - c);
  return hi <= lo ? (__mmask16)0 : (__mmask16)(((1u << hi) - 1) & ~((1u << lo) - 1));
}
// Depthwise rows: one channel plane's output rows [oh0, oh1), every column, summed into acc (row-major, ow apart),
// read straight from the unpadded image: the lanes of a load that fall into the padding are masked off (a
// masked-off lane never faults) and rows above or below the image read a row of zeros, so there is no padded copy
// and no position is computed twice. Output columns in chunks of 16, 8 rows at a time: 8 independent sums in
// flight per tap (an FMA's latency times its rate), one load per FMA and one mask per tap. Column stride 1, or 2:
// two loads per tap and their even lanes picked by one permute.
inline void depthwise_rows(const float* __restrict image, const float* __restrict kernel, float* __restrict acc,
                           int64_t oh0, int64_t oh1, int64_t h, int64_t w, int64_t ow, int64_t kh_, int64_t kw_,
                           int64_t sh, int64_t sw, int64_t dh, int64_t dw, int64_t pt, int64_t pl) {
  constexpr int R = 8;
  static thread_local std::vector<float> zeros;
  if (zeros.size() < (size_t)(w + pl + 64)) zeros.assign(w + pl + 64, 0.0f);
  const float* zero_row = zeros.data() + pl + 16;  // any lane of a load at column >= -pl - 16 that is not masked off
  const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
  for (int64_t oh = oh0; oh < oh1; oh += R) {  // the input rows of 8 output rows stay in L1 across their chunks
    const int64_t rows = std::min<int64_t>(R, oh1 - oh);
    for (int64_t ow0 = 0; ow0 < ow; ow0 += 16) {
      const __mmask16 out = (__mmask16)((1u << std::min<int64_t>(16, ow - ow0)) - 1);
      __m512 s[R];
#pragma GCC unroll 8
      for (int r = 0; r < R; ++r) s[r] = _mm512_setzero_ps();
      for (int64_t i = 0; i < kh_; ++i) {
        const float* from[R];
#pragma GCC unroll 8
        for (int r = 0; r < R; ++r) {
          const int64_t ih = (oh + r) * sh - pt + i * dh;
          from[r] = r < rows && ih >= 0 && ih < h ? image + ih * w : zero_row;
        }
        for (int64_t j = 0; j < kw_; ++j) {
          const int64_t c = ow0 * sw - pl + j * dw;  // the column lane 0 reads
          const __m512 k = _mm512_set1_ps(kernel[i * kw_ + j]);
          if (sw == 1) {
            const __mmask16 m = row_lanes(c, w) & out;
#pragma GCC unroll 8
            for (int r = 0; r < R; ++r) s[r] = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, from[r] + c), k, s[r]);
          } else {
            const __mmask16 m0 = row_lanes(c, w), m1 = row_lanes(c + 16, w);
#pragma GCC unroll 8
            for (int r = 0; r < R; ++r) {
              const __m512 lo = _mm512_maskz_loadu_ps(m0, from[r] + c), hi = _mm512_maskz_loadu_ps(m1, from[r] + c + 16);
              s[r] = _mm512_fmadd_ps(_mm512_permutex2var_ps(lo, even, hi), k, s[r]);
            }
          }
        }
      }
      for (int64_t r = 0; r < rows; ++r) _mm512_mask_storeu_ps(acc + (oh - oh0 + r) * ow + ow0, out, s[r]);
    }
  }
}
// The flat range of a padded plane (the stride-1 depthwise kernel): acc[q] = sum over taps t of
// kernel[t] * in[q + offset of t] for q < count, 8 vectors of positions in flight (the compiler's own vectorisation
// of that loop was 10-20% slower).
inline void flat_taps(const float* __restrict in, const float* __restrict kernel, float* __restrict acc,
                      int64_t count, int64_t kh_, int64_t kw_, int64_t dh, int64_t dw, int64_t wp) {
  int64_t q = 0;
  for (; q + 128 <= count; q += 128) {
    __m512 s[8];
#pragma GCC unroll 8
    for (int v = 0; v < 8; ++v) s[v] = _mm512_setzero_ps();
    for (int64_t i = 0; i < kh_; ++i)
      for (int64_t j = 0; j < kw_; ++j) {
        const __m512 k = _mm512_set1_ps(kernel[i * kw_ + j]);
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
    for (int64_t i = 0; i < kh_; ++i)
      for (int64_t j = 0; j < kw_; ++j)
        s = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, in + q + i * dh * wp + j * dw), _mm512_set1_ps(kernel[i * kw_ + j]), s);
    _mm512_mask_storeu_ps(acc + q, m, s);
  }
}
#else
inline void flat_taps(const float* __restrict in, const float* __restrict kernel, float* __restrict acc,
                      int64_t count, int64_t kh_, int64_t kw_, int64_t dh, int64_t dw, int64_t wp) {
  #pragma omp simd
  for (int64_t q = 0; q < count; ++q) {
    float sum = 0.0f;
    for (int64_t i = 0; i < kh_; ++i)
      for (int64_t j = 0; j < kw_; ++j) sum += kernel[i * kw_ + j] * in[q + i * dh * wp + j * dw];
    acc[q] = sum;
  }
}
// The same sums in plain C++ (lowering picks this kernel on AVX-512 CPUs; a build without AVX-512 flags still
// compiles and computes them).
inline void depthwise_rows(const float* __restrict image, const float* __restrict kernel, float* __restrict acc,
                           int64_t oh0, int64_t oh1, int64_t h, int64_t w, int64_t ow, int64_t kh_, int64_t kw_,
                           int64_t sh, int64_t sw, int64_t dh, int64_t dw, int64_t pt, int64_t pl) {
  for (int64_t oh = oh0; oh < oh1; ++oh) {
    float* row = acc + (oh - oh0) * ow;
    for (int64_t x = 0; x < ow; ++x) row[x] = 0.0f;
    for (int64_t i = 0; i < kh_; ++i) {
      const int64_t ih = oh * sh - pt + i * dh;
      if (ih < 0 || ih >= h) continue;
      for (int64_t j = 0; j < kw_; ++j) {
        const auto [lo, hi] = inside(j * dw - pl, sw, ow, w);
        const float k = kernel[i * kw_ + j];
        const float* from = image + ih * w + j * dw - pl;
        for (int64_t x = lo; x < hi; ++x) row[x] += k * from[x * sw];
      }
    }
  }
}
#endif
// Where padded pixel (r, t) relative to a window's corner lies in the phase planes of pad_phase (each h2 x w2,
// phase (a, b) at index a * sw + b): the offset of a tap from the output position it serves.
inline int64_t phase_offset(int64_t r, int64_t t, int64_t sh, int64_t sw, int64_t h2, int64_t w2) {
  return ((r % sh) * sw + t % sw) * h2 * w2 + (r / sh) * w2 + t / sw;
}
}  // namespace sdflow_conv
#endif
"""


def packed_input(ctx: Ctx) -> tuple[str, str] | None:
    """The node's pre-packed weights, when lowering gave it some (``conv_direct.prepack``): their pointer, and the
    kernel form their layout is for: 'winograd' ([16][M / 8][C][8]), 'channels' ([M / 16][C * KH * KW][16]) or
    'packed' ([M / 8][C * KH * KW][8])."""
    if PACKED_CONNECTOR not in ctx.inputs:
        return None
    shape = ctx.shape(PACKED_CONNECTOR)
    kind = "winograd" if len(shape) == 4 else "channels" if int(shape[-1]) == 16 else "packed"
    return ctx.ptr(PACKED_CONNECTOR), kind


def conv_includes(packed) -> str:
    """The code_global of a convolution kernel's tasklet."""
    return CONV_INCLUDES + (DIRECT_INCLUDES if packed else "")


def _plane_epilogue(bias: str | None, epilogue: tuple[str, str] | None, first: str, last: str) -> str:
    """Bias and epilogue (``conv_code``'s) in place on positions [first, last) of the plane at out_ (channel m_,
    sample n_); nothing when there are none."""
    statements, final = epilogue or ("", "a_")
    if bias is None and not statements and final == "a_":
        return ""
    return (_PLANE_EPILOGUE.replace("BIAS", f"{bias}[m_]" if bias else "0.0f").replace("FIRST", first)
            .replace("LAST", last).replace("STATEMENTS", statements).replace("FINAL", final))


def _store_epilogue(bias: str | None, epilogue: tuple[str, str] | None) -> str:
    """Outputs [p0_, p0_ + width_) of the plane at out_ from src_[j_ * step_], with bias and epilogue (a copy when
    there are none)."""
    statements, final = epilogue or ("", "a_")
    if bias is None and not statements and final == "a_":
        return "for (int64_t j_ = 0; j_ < width_; ++j_) out_[p0_ + j_] = src_[j_ * step_];"
    return (_STORE_EPILOGUE.replace("BIAS", f"{bias}[m_]" if bias else "0.0f").replace("STATEMENTS", statements)
            .replace("FINAL", final))


def conv_code(node, x_shape, w_shape, x: str, w: str, y: str, bias: str | None = None,
              epilogue: tuple[str, str] | None = None, packed: tuple[str, str] | None = None,
              implementation: str = "") -> str:
    """C++ of a float32 Conv from pointers ``x``, ``w`` (and ``bias``) into ``y``. ``epilogue`` = (statements,
    final expression) applied to every output element while its plane or tile is in cache: the statements read
    ``a_`` (the convolution plus bias) and may index other tensors by sample ``n_``, channel ``m_`` and position
    ``p_`` in the plane. ``packed``: ``packed_input``'s pointer to the weights pre-packed for the direct kernel
    (or transformed for its Winograd form; ``conv_direct``), which then runs instead of im2col + BLAS."""
    kernel = node.attr("kernel_shape") or list(w_shape[2:])
    group = node.attr("group", 1)
    code = _geometry_constants(node, x_shape, kernel)
    code += (f"const int64_t M_ = {cexpr(w_shape[0])}, G_ = {group}, CG_ = C_ / G_, MG_ = M_ / G_, "
             "KK_ = CG_ * KH_ * KW_, P_ = OH_ * OW_;\n")
    code += f"const float* X_ = {x}; float* Y_ = {y};\n"
    if packed is None:
        code += f"const float* Wt_ = {w};\n"
    depthwise = group > 1 and w_shape[1] == 1
    store = _store_epilogue(bias, epilogue)
    if packed is not None:
        tile = _plane_epilogue(bias, epilogue, "p0_", "p0_ + width_")
        return code + direct_code(*packed).replace("TILE_EPILOGUE", tile).replace("STORE_EPILOGUE", store)
    code += _INSIDE
    if depthwise and uses_depthwise_rows(window_geometry(node, list(x_shape[2:]), kernel).out[-1],
                                         (node.attr("strides") or [1])[-1], implementation):
        return code + _DEPTHWISE_ROWS.replace("PLANE_ROWS", _PLANE_ROWS).replace("STORE_EPILOGUE", store)
    if depthwise:
        return code + (_DEPTHWISE.replace("TILE_EPILOGUE", _plane_epilogue(bias, epilogue, "p0_", "p0_ + OW_"))
                       .replace("STORE_EPILOGUE", store))
    code += f"const bool IM2COL_ = {'false' if is_pointwise(node, kernel) else 'true'};\n"
    return code + _TILES.replace("TILE_EPILOGUE", _plane_epilogue(bias, epilogue, "p0_", "p0_ + width_"))


# A 1x1 convolution and a depthwise convolution of its output, as one kernel (fuse-conv-depthwise): per task
# (sample, block of 8 expanded channels) the direct kernel's register tiles write the block's 8 planes into a
# per-thread buffer, its bias and epilogue are applied there, and sdflow_conv::depthwise_rows runs the depthwise
# convolution of each plane from the buffer into the output, with its own bias and epilogue. The expanded tensor
# never goes to memory: at most 8 planes of it exist at a time, per thread (MobileNetV2's 16 -> 96 expansion over
# 112x112: 400 KB in L2 instead of 4.8 MB written and read back). Constants: the depthwise convolution's
# geometry (_geometry_constants over the expanded tensor: C_ its channels, H_ x W_ its plane), CX_ the 1x1
# convolution's input channels, M2_ the output channels (MG_ per expanded channel).
_CONV_DEPTHWISE = """
static thread_local std::vector<int64_t> taps_;
taps_.resize(CX_);
for (int64_t c_ = 0; c_ < CX_; ++c_) taps_[c_] = c_ * P1_;
const int64_t* koff_ = taps_.data();
const int64_t MB_ = (C_ + 7) / 8, TILE_ = sdflow_direct::TILE, tiles_ = std::max<int64_t>(1, sdflow_direct::tiles(P1_));
#pragma omp parallel
{
  const int64_t rows_ = std::max<int64_t>(1, std::min<int64_t>(OH_, 4096 / std::max<int64_t>(OW_, 1)));
  static thread_local std::vector<float> planes_buffer_, acc_buffer_;
  if (planes_buffer_.size() < (size_t)(8 * P1_)) planes_buffer_.resize(8 * P1_);
  if (acc_buffer_.size() < (size_t)(rows_ * OW_)) acc_buffer_.resize(rows_ * OW_);
  float* planes_ = planes_buffer_.data();
  float* acc_ = acc_buffer_.data();
  const int64_t run_ = std::max<int64_t>(1, N_ * MB_ / (8 * omp_get_num_threads()));  // ~8 runs of blocks per thread
  #pragma omp for schedule(dynamic, run_)
  for (int64_t t_ = 0; t_ < N_ * MB_; ++t_) {
    const int64_t n_ = t_ / MB_, mb_ = t_ % MB_, channels_ = std::min<int64_t>(8, C_ - mb_ * 8);
    const float* x_ = X_ + n_ * CX_ * P1_;
    const float* w_ = PACKED_ + mb_ * CX_ * 8;
    for (int64_t tile_ = 0; tile_ < tiles_; ++tile_) {
      const int64_t q0_ = tile_ * TILE_, count_ = tile_ == tiles_ - 1 ? P1_ - q0_ : TILE_;
      sdflow_direct::positions(x_ + q0_, koff_, CX_, w_, planes_ + q0_, P1_, channels_, count_);
    }
    for (int64_t i_ = 0; i_ < channels_; ++i_) {
      float* image_ = planes_ + i_ * P1_;
      {  // the 1x1 convolution's bias and epilogue, in place
        const int64_t m_ = mb_ * 8 + i_;
        float* out_ = image_;
        EPILOGUE1
      }
      for (int64_t j_ = 0; j_ < MG_; ++j_) {
        const int64_t m_ = (mb_ * 8 + i_) * MG_ + j_;
        const float* kernel_ = Wt_ + m_ * KH_ * KW_;
        float* out_ = Y_ + (n_ * M2_ + m_) * P_;
        PLANE_ROWS
      }
    }
  }
}
"""


def conv_depthwise_code(conv1, conv2, x_shape, w1_shape, mid_shape, w2_shape, x: str, w1: str, w2: str, y: str,
                        bias1: str | None, bias2: str | None, epilogue1: tuple[str, str], epilogue2: tuple[str, str],
                        packed: tuple[str, str] | None, implementation: str = "") -> str:
    """C++ of a 1x1 convolution (``conv1``: x -> the expanded tensor of ``mid_shape``, then ``epilogue1``) and a
    depthwise one of its result (``conv2``, then ``epilogue2``) into ``y``; epilogues as in ``conv_code``. With
    the direct kernel's packed weights (``packed``), a 1x1 ``conv1``, a depthwise ``conv2`` and a column stride of
    at most 2 (what depthwise_rows' vector form serves), _CONV_DEPTHWISE; otherwise (any two convolutions) the
    two one after the other through a scratch tensor."""
    kernel2 = conv2.attr("kernel_shape") or list(w2_shape[2:])
    pointwise = len(w1_shape) == 4 and is_pointwise(conv1, w1_shape[2:]) and conv1.attr("group", 1) == 1
    depthwise = w2_shape[1] == 1 and conv2.attr("group", 1) == mid_shape[1] and len(mid_shape) == 4
    if (packed is None or packed[1] != "packed" or not pointwise or not depthwise
            or (conv2.attr("strides") or [1])[-1] > 2):
        scratch = (f"const size_t mid_size_ = (size_t)({cexpr(product(mid_shape))});\n"
                   "static thread_local std::vector<float> mid_buffer_;  // the caller's; the workers write into it\n"
                   "if (mid_buffer_.size() < mid_size_) mid_buffer_.resize(mid_size_);\n"
                   "float* mid_ = mid_buffer_.data();\n")
        return (scratch + "{\n" + conv_code(conv1, x_shape, w1_shape, x, w1, "mid_", bias1, epilogue1, packed)
                + "}\n{\n" + conv_code(conv2, mid_shape, w2_shape, "mid_", w2, y, bias2, epilogue2,
                                        implementation=implementation) + "}\n")
    code = _geometry_constants(conv2, mid_shape, kernel2)
    code += (f"const int64_t CX_ = {cexpr(x_shape[1])}, M2_ = {cexpr(w2_shape[0])}, MG_ = M2_ / C_, P1_ = H_ * W_, "
             "P_ = OH_ * OW_;\n")
    code += f"const float* X_ = {x}; float* Y_ = {y}; const float* Wt_ = {w2}; const float* PACKED_ = {packed[0]};\n"
    return code + (_CONV_DEPTHWISE.replace("EPILOGUE1", _plane_epilogue(bias1, epilogue1, "0", "P1_"))
                   .replace("PLANE_ROWS", _PLANE_ROWS).replace("STORE_EPILOGUE", _store_epilogue(bias2, epilogue2)))


@expansion("Conv", environments=[OpenBLAS])
def conv(ctx: Ctx):
    x, w, b, y = (ctx.connector("in", 0), ctx.connector("in", 1), ctx.connector("in", 2), ctx.connector("out", 0))
    if ctx.desc(x).dtype.ctype != "float":
        raise CompileError(f"Conv {ctx.node.label!r}: only float32 is supported")
    if len(ctx.shape(x)) == 5:
        return ctx.tasklet(_conv3d_call(ctx, x, w, b, y), includes='#include "conv3d.h"')
    packed = packed_input(ctx)
    # The direct kernel reads the packed copy only.
    return ctx.tasklet(conv_code(ctx.node, ctx.shape(x), ctx.shape(w), ctx.ptr(x), ctx.ptr(w), ctx.ptr(y),
                                 ctx.ptr(b) if b else None, packed=packed,
                                 implementation=ctx.node.implementation or ""),
                       includes=conv_includes(packed), unread=(w,) if packed else ())


def _conv3d_call(ctx: Ctx, x: str, w: str, b: str | None, y: str) -> str:
    """A 3-D convolution (video models): one call of ``sdflow_kernels::conv3d`` (codegen/kernels/conv3d.h)."""
    x_shape, w_shape = ctx.shape(x), ctx.shape(w)
    geo = Conv.geometry(ctx.node, x_shape, w_shape)
    fields = [*x_shape, w_shape[0], ctx.node.attr("group", 1), *geo.kernel, *geo.strides, *geo.dilations,
              *geo.pads_begin, *geo.out]
    geometry = ", ".join(f"(int64_t)({cexpr(v)})" for v in fields)
    bias = ctx.ptr(b) if b else "nullptr"
    return f"sdflow_kernels::conv3d({ctx.ptr(x)}, {ctx.ptr(w)}, {bias}, {ctx.ptr(y)}, {{{geometry}}});"


def _window_values(x_shape, geo) -> dict:
    """Per-axis window values for 3-D loops (D H W; 1-D and 2-D inputs get leading size-1 axes): sizes D H W,
    kernel KD KH KW, strides SD SH SW, dilations DD DH DW, leading pads PD PH PW, trailing pads QD QH QW,
    outputs OD OH OW."""
    lead = 3 - len(geo.kernel)
    fields = dict(zip(("", "K", "S", "D", "P", "Q", "O"),
                      ([1] * lead + list(x_shape[2:]), [1] * lead + list(geo.kernel), [1] * lead + geo.strides,
                       [1] * lead + geo.dilations, [0] * lead + geo.pads_begin, [0] * lead + geo.pads_end,
                       [1] * lead + geo.out)))
    return {f"{prefix}{axis}": value[i] for prefix, value in fields.items() for i, axis in enumerate("DHW")}


def _constants(values: dict) -> str:
    return "const int64_t " + ", ".join(f"{k}_ = {cexpr(v)}" for k, v in values.items()) + ";\n"


def _pool_constants(ctx: Ctx, x_shape) -> str:
    """C++ constants of the pool's window (``_window_values``) and the channel count C."""
    geo = window_geometry(ctx.node, list(x_shape[2:]), ctx.node.attr("kernel_shape"),
                          bool(ctx.node.attr("ceil_mode", 0)), max_rank=3)
    return _constants({**_window_values(x_shape, geo), "C": x_shape[1]})


def _pool_code(ctx: Ctx, x_shape) -> str:
    """The window loop of one (n, c) plane: ``x`` and ``y`` (and ``ind``, MaxPool's indices) point at it."""
    op_type = ctx.node.op_type
    ctype = ctx.desc(ctx.connector("in", 0)).dtype.ctype
    acc_type = "double" if ctype == "double" else "float"
    p = ctx.node.attr("p", 2) if op_type == "LpPool" else None
    if op_type == "MaxPool":
        init = f"std::numeric_limits<{ctype}>::lowest()"
        update = "if (v_ > acc_ || (v_ != v_ && acc_ == acc_)) { acc_ = v_; best_ = (id_ * H_ + ih_) * W_ + iw_; "\
                 "best_cm_ = (iw_ * H_ + ih_) * D_ + id_; }"
    elif op_type == "AveragePool":
        init, update = "0", "acc_ += v_; ++count_;"
    else:  # LpPool
        init = "0"
        update = {1: "acc_ += std::abs(v_);", 2: "acc_ += v_ * v_;"}.get(
            p, f"acc_ += std::pow(std::abs(({acc_type})v_), ({acc_type}){p});")
    if op_type == "MaxPool":
        finish = "y[out_] = acc_;"
        if ctx.connector("out", 1):
            column_major = ctx.node.attr("storage_order", 0) == 1
            finish += f" ind[out_] = plane_ * D_ * H_ * W_ + {'best_cm_' if column_major else 'best_'};"
    elif op_type == "LpPool":
        root = {1: "acc_", 2: "std::sqrt(acc_)"}.get(p, f"std::pow(acc_, ({acc_type})1 / ({acc_type}){p})")
        finish = f"y[out_] = ({ctype})({root});"
    elif ctx.node.attr("count_include_pad", 0):
        # Padded positions count, positions past the padding (ceil_mode) do not.
        counts = [f"((std::min({o}s_ + (K{a}_ - 1) * D{a}_, {a}_ + Q{a}_ - 1) - {o}s_) / D{a}_ + 1)"
                  for a, o in (("D", "od"), ("H", "oh"), ("W", "ow"))]
        finish = f"y[out_] = ({ctype})(acc_ / ({acc_type})({' * '.join(counts)}));"
    else:
        finish = f"y[out_] = ({ctype})(acc_ / ({acc_type})count_);"
    return _pool_constants(ctx, x_shape) + f"""
const int64_t plane_ = i0 * C_ + i1; (void)plane_;
for (int64_t od_ = 0; od_ < OD_; ++od_)
 for (int64_t oh_ = 0; oh_ < OH_; ++oh_)
  for (int64_t ow_ = 0; ow_ < OW_; ++ow_) {{
    const int64_t ods_ = od_ * SD_ - PD_, ohs_ = oh_ * SH_ - PH_, ows_ = ow_ * SW_ - PW_;
    const int64_t out_ = (od_ * OH_ + oh_) * OW_ + ow_;
    {acc_type if op_type != "MaxPool" else ctype} acc_ = {init}; int64_t count_ = 0, best_ = -1, best_cm_ = -1;
    for (int64_t kd_ = 0; kd_ < KD_; ++kd_) {{
     const int64_t id_ = ods_ + kd_ * DD_;
     if (id_ < 0 || id_ >= D_) continue;
     for (int64_t kh_ = 0; kh_ < KH_; ++kh_) {{
      const int64_t ih_ = ohs_ + kh_ * DH_;
      if (ih_ < 0 || ih_ >= H_) continue;
      for (int64_t kw_ = 0; kw_ < KW_; ++kw_) {{
        const int64_t iw_ = ows_ + kw_ * DW_;
        if (iw_ < 0 || iw_ >= W_) continue;
        const {ctype} v_ = x[(id_ * H_ + ih_) * W_ + iw_];
        {update}
      }}
     }}
    }}
    (void)count_; (void)best_; (void)best_cm_;
    {finish}
  }}
"""


# A float32 2-D MaxPool without indices: the plane copied into a per-thread buffer as SH x SW phase planes padded
# with -inf (phase (a, b) holds the padded pixels (i * SH + a, j * SW + b)), then the outputs as a flat range over
# the phase planes' rows (the columns past each row's end are computed and dropped), vectorised: each tap is a run
# of consecutive floats. The generic window loop tests every tap's bounds and does not vectorise (ResNet-18's
# 3x3 stride-2 MaxPool took 3.6x ONNX Runtime's time, benchmarks/ort_nodes.py). A NaN in the window is the result
# (as ReduceMax; ONNX Runtime's answer there depends on where the NaN falls in its vector lanes).
_MAX_POOL_PLANES = """
const int64_t HP_ = std::max<int64_t>(H_ + PH_ + QH_, (OH_ - 1) * SH_ + (KH_ - 1) * DH_ + 1);
const int64_t WP_ = std::max<int64_t>(W_ + PW_ + QW_, (OW_ - 1) * SW_ + (KW_ - 1) * DW_ + 1);
const int64_t H2_ = (HP_ + SH_ - 1) / SH_, W2_ = (WP_ + SW_ - 1) / SW_, PLANE2_ = H2_ * W2_;
static thread_local std::vector<float> buffer_;
if (buffer_.size() < (size_t)(SH_ * SW_ * PLANE2_ + W2_ + 16)) buffer_.resize(SH_ * SW_ * PLANE2_ + W2_ + 16);
float* __restrict planes_ = buffer_.data();
const float lowest_ = -std::numeric_limits<float>::infinity();
for (int64_t phase_ = 0; phase_ < SH_ * SW_; ++phase_)
  sdflow_conv::pad_phase(x, H_, W_, PH_, PW_, SH_, SW_, phase_ / SW_, phase_ % SW_, H2_, W2_,
                         planes_ + phase_ * PLANE2_, lowest_);
int64_t taps_[KH_ * KW_];
for (int64_t kh_ = 0; kh_ < KH_; ++kh_)
  for (int64_t kw_ = 0; kw_ < KW_; ++kw_)
    taps_[kh_ * KW_ + kw_] = sdflow_conv::phase_offset(kh_ * DH_, kw_ * DW_, SH_, SW_, H2_, W2_);
for (int64_t oh_ = 0; oh_ < OH_; ++oh_) {
  const float* __restrict in_ = planes_ + oh_ * W2_;
  float* __restrict out_ = y + oh_ * OW_;
  #pragma omp simd
  for (int64_t ow_ = 0; ow_ < OW_; ++ow_) {
    float m_ = lowest_;
    for (int64_t k_ = 0; k_ < KH_ * KW_; ++k_) { const float v_ = in_[ow_ + taps_[k_]]; m_ = (v_ > m_ || v_ != v_) ? v_ : m_; }
    out_[ow_] = m_;
  }
}
"""


@expansion("MaxPool", "AveragePool", "LpPool")
def pool(ctx: Ctx):
    x, y, ind = ctx.connector("in", 0), ctx.connector("out", 0), ctx.connector("out", 1)
    x_shape, y_shape = ctx.shape(x), ctx.shape(y)
    if ctx.node.op_type == "MaxPool" and not ind and len(x_shape) == 4 and ctx.desc(x).dtype.ctype == "float":
        code, includes = _pool_constants(ctx, x_shape) + _MAX_POOL_PLANES, CONV_INCLUDES
    else:
        code, includes = _pool_code(ctx, x_shape), ""
    spatial = ", ".join(f"0:{d}" for d in x_shape[2:])
    out_spatial = ", ".join(f"0:{d}" for d in y_shape[2:])
    sdfg, state = ctx.nested()
    outputs = {"y": f"{y}[i0, i1, {out_spatial}]"}
    if ind:
        outputs["ind"] = f"{ind}[i0, i1, {out_spatial}]"
    add_map(state, ctx.node.op_type.lower(), index_ranges(x_shape[:2]), {"x": f"{x}[i0, i1, {spatial}]"},
            code, outputs, pointers=["x", *outputs], includes=includes)
    return sdfg


@expansion("CausalConvWithState")
def causal_conv_with_state(ctx: Ctx):
    x, w, bias, past = (ctx.connector("in", p) for p in range(4))
    y, present = ctx.connector("out", 0), ctx.connector("out", 1)
    batch, channels, length = ctx.shape(x)
    k = ctx.shape(w)[2]
    ctype = ctx.desc(x).dtype.ctype
    acc = "double" if ctype == "double" else "float"
    inputs = {"x": f"{x}[i0, i1, 0:{length}]", "w": f"{w}[i1, 0, 0:{k}]"}
    if bias:
        inputs["b"] = f"{bias}[i1]"
    if past:
        inputs["past"] = f"{past}[i0, i1, 0:{cexpr(k - 1)}]"
    outputs = {"y": f"{y}[i0, i1, 0:{length}]"}
    if present and k != 1:
        outputs["present"] = f"{present}[i0, i1, 0:{cexpr(k - 1)}]"
    at = "(p_ < K_ - 1 ? " + ("past[p_]" if past else f"({ctype})0") + " : x[p_ - (K_ - 1)])"
    activation = "v_ = v_ / (1 + std::exp(-v_));" if ctx.node.attr("activation", "none") in ("silu", "swish") else ""
    code = f"""
const int64_t L_ = {cexpr(length)}, K_ = {cexpr(k)};
for (int64_t t_ = 0; t_ < L_; ++t_) {{
  {acc} sum_ = {"b" if bias else "0"};
  for (int64_t j_ = 0; j_ < K_; ++j_) {{ const int64_t p_ = t_ + j_; sum_ += ({acc})w[j_] * ({acc}){at}; }}
  {acc} v_ = ({acc})({ctype})sum_;
  {activation}
  y[t_] = ({ctype})v_;
}}
"""
    if "present" in outputs:
        code += f"for (int64_t i_ = 0; i_ < K_ - 1; ++i_) {{ const int64_t p_ = L_ + i_; present[i_] = {at}; }}\n"
    sdfg, state = ctx.nested()
    add_map(state, "causal_conv", index_ranges([batch, channels]), inputs, code, outputs,
            pointers=[n for n in (*inputs, *outputs) if n != "b"])
    return sdfg


@expansion("ConvTranspose")
def conv_transpose(ctx: Ctx):
    """Parallel over output planes (sample, output channel): each scatters its group's input channels."""
    x, w, b, y = (ctx.connector("in", 0), ctx.connector("in", 1), ctx.connector("in", 2), ctx.connector("out", 0))
    x_shape, w_shape = ctx.shape(x), ctx.shape(w)
    geo = conv_transpose_geometry(ctx.node, x_shape, w_shape)
    group = ctx.node.attr("group", 1)
    values = {**_window_values(x_shape, geo), "N": x_shape[0], "C": x_shape[1], "G": group, "MG": w_shape[1]}
    ctype = ctx.desc(y).dtype.ctype
    acc = "double" if ctype == "double" else "float"
    code = _constants(values) + f"""
const int64_t M_ = MG_ * G_, CG_ = C_ / G_, PLANE_ = OD_ * OH_ * OW_, KK_ = KD_ * KH_ * KW_;
const {ctype}* X_ = {ctx.ptr(x)}; const {ctype}* Wt_ = {ctx.ptr(w)}; {ctype}* Y_ = {ctx.ptr(y)};
#pragma omp parallel for collapse(2)
for (int64_t n_ = 0; n_ < N_; ++n_)
  for (int64_t m_ = 0; m_ < M_; ++m_) {{
    const int64_t g_ = m_ / MG_, ml_ = m_ % MG_;
    std::vector<{acc}> out_(PLANE_, ({acc}){f"{ctx.ptr(b)}[m_]" if b else "0"});
    for (int64_t c_ = g_ * CG_; c_ < (g_ + 1) * CG_; ++c_) {{
      const {ctype}* in_ = X_ + (n_ * C_ + c_) * D_ * H_ * W_;
      const {ctype}* k_ = Wt_ + (c_ * MG_ + ml_) * KK_;
      for (int64_t id_ = 0; id_ < D_; ++id_) for (int64_t ih_ = 0; ih_ < H_; ++ih_) for (int64_t iw_ = 0; iw_ < W_; ++iw_) {{
        const {acc} v_ = in_[(id_ * H_ + ih_) * W_ + iw_];
        for (int64_t kd_ = 0; kd_ < KD_; ++kd_) {{
          const int64_t od_ = id_ * SD_ + kd_ * DD_ - PD_;
          if (od_ < 0 || od_ >= OD_) continue;
          for (int64_t kh_ = 0; kh_ < KH_; ++kh_) {{
            const int64_t oh_ = ih_ * SH_ + kh_ * DH_ - PH_;
            if (oh_ < 0 || oh_ >= OH_) continue;
            for (int64_t kw_ = 0; kw_ < KW_; ++kw_) {{
              const int64_t ow_ = iw_ * SW_ + kw_ * DW_ - PW_;
              if (ow_ < 0 || ow_ >= OW_) continue;
              out_[(od_ * OH_ + oh_) * OW_ + ow_] += v_ * ({acc})k_[(kd_ * KH_ + kh_) * KW_ + kw_];
            }}
          }}
        }}
      }}
    }}
    {ctype}* plane_ = Y_ + (n_ * M_ + m_) * PLANE_;
    for (int64_t p_ = 0; p_ < PLANE_; ++p_) plane_[p_] = ({ctype})out_[p_];
  }}
"""
    return ctx.tasklet(code)


@expansion("LRN")
def lrn(ctx: Ctx):
    """Parallel over (sample, channel) planes; the window's squares are summed per pixel."""
    x, y = ctx.connector("in", 0), ctx.connector("out", 0)
    shape = ctx.shape(x)
    size = ctx.node.attr("size")
    alpha, beta, bias = (float(ctx.node.attr(a, d)) for a, d in (("alpha", 1e-4), ("beta", 0.75), ("bias", 1.0)))
    ctype = ctx.desc(x).dtype.ctype
    acc = "double" if ctype == "double" else "float"
    code = f"""
const int64_t N_ = {cexpr(shape[0])}, C_ = {cexpr(shape[1])}, P_ = {cexpr(product(shape[2:]))};
const {ctype}* X_ = {ctx.ptr(x)}; {ctype}* Y_ = {ctx.ptr(y)};
#pragma omp parallel for collapse(2)
for (int64_t n_ = 0; n_ < N_; ++n_)
  for (int64_t c_ = 0; c_ < C_; ++c_) {{
    const int64_t low_ = std::max<int64_t>(0, c_ - {(size - 1) // 2});
    const int64_t high_ = std::min<int64_t>(C_, c_ + {(size - 1) - (size - 1) // 2 + 1});
    for (int64_t p_ = 0; p_ < P_; ++p_) {{
      {acc} sum_ = 0;
      for (int64_t k_ = low_; k_ < high_; ++k_) {{ const {acc} v_ = X_[(n_ * C_ + k_) * P_ + p_]; sum_ += v_ * v_; }}
      const {acc} v_ = X_[(n_ * C_ + c_) * P_ + p_];
      Y_[(n_ * C_ + c_) * P_ + p_] = ({ctype})(v_ / std::pow(({acc}){bias!r} + ({acc}){alpha / size!r} * sum_, ({acc}){beta!r}));
    }}
  }}
"""
    return ctx.tasklet(code)
