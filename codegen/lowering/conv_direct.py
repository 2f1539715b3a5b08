"""Direct convolution with pre-packed weights (float32, one group, 1-D or 2-D; AVX-512): no im2col matrix and no
BLAS packing per call; and its Winograd F(2x2, 3x3) form for 3x3 stride-1 convolutions.

Like ONNX Runtime's kernels, which pre-pack constant initialisers when a session is created, lowering re-lays a
Conv's constant weight once (``prepack``): [M, C, KH, KW] becomes blocks of 8 output channels, [M / 8][C * KH * KW][8],
passed to the program as an extra weight ``<weight>__packed8`` (``weight_value`` recomputes it when a cached build
is loaded without lowering). The kernel keeps a register tile of 8 output channels x 48 output positions (24
AVX-512 accumulators) and walks the C * KH * KW taps: per tap, three vector loads of the (zero-padded) image
through a table of tap offsets and 8 broadcast weights. The positions run over the padded image's rows as one
flat range (the columns past each row's end are computed and dropped), so small images (7x7) still fill whole
tiles; a last tile of up to 64 positions runs as that tile plus vectors over the 8 channels for 49-56, as two
halves of 4 channels x 4 vectors for 57-64. A strided convolution
first splits the padded image into stride x stride phase planes, over which it is a stride-1 convolution. A tile
that is one run of outputs (an unpadded 1x1 convolution) is stored straight into the output planes, others
through a buffer by row segments; the epilogue (bias, fused ops) runs on each while it is in cache.

Small images with many taps (``kernel_kind`` 'channels': output rows of at most 14, at least 2048 taps) turn the
tile around: P positions of a row x up to 48 output channels (3 vectors of 16), the weights packed as
[M / 16][C * KH * KW][16] (``channels_pack``, ``<weight>__channels16``), one broadcast input per position and tap.

Winograd F(2x2, 3x3) (``uses_winograd``: 3x3, stride 1, no dilation, outputs of at least 8x8): the weights are
transformed once (G g G^T, ``winograd_pack``, ``<weight>__winograd8``); per block of 48 output tiles of 2x2, the
input patches are transformed (B^T d B) into 16 matrices [C][48], the 16 products with the transformed weights run
on the same register tile (the channels as taps), and the output transform A^T m A gives the 2x2 outputs: 16
multiplications per 2x2 outputs instead of 36.

Measured on the machine that wrote this (2 cores, AVX-512), against im2col + OpenBLAS: ResNet-18's 3x3
convolutions 130-190 -> 180-225 GFLOP/s with the direct kernel; MobileNetV2's 1x1 convolutions mostly 1.1-2x
faster. With Winograd, ResNet-18's 3x3 stride-1 layers take 0.85-1.16x ONNX Runtime's time (direct: 1.3-1.5x).
Where BLAS measured faster (strided 1x1, strided with few taps, 1x1 projections between few channels)
``uses_direct`` keeps it."""
from __future__ import annotations

import re

import dace
import numpy as np

from sdflow.ir.ops.nn import window_geometry
from ..options import KernelOptions
from ..threads import has_avx512

DEFAULTS = KernelOptions()

__all__ = ["uses_direct", "uses_winograd", "kernel_kind", "pack", "winograd_pack", "channels_pack", "packed_name",
           "weight_value", "direct_code", "prepack", "DIRECT_INCLUDES", "PACKED_CONNECTOR"]

BLOCK = 8  # output channels per packed block: the kernel's register tile (its C++ is written for 8)
PACKED_CONNECTOR = "packed_weight"  # the op node's input that ``prepack`` adds
_PACKED = re.compile(r"(.+)__(packed|winograd|channels)(?:8|16)")


def uses_direct(node, x_shape, w_shape, dtype, options: KernelOptions = DEFAULTS) -> bool:
    """Whether this Conv runs the direct kernel; it keeps its other kernels for other types, groups, 3-D, weights
    computed at run time (no shape), CPUs without AVX-512 (the kernel is written for its 32 vector registers),
    the option ``direct_conv=false``, and shapes where those measured faster."""
    if not options.direct_conv:
        return False
    kernel = node.attr("kernel_shape") or list(w_shape[2:])
    if dtype != np.float32 or node.attr("group", 1) != 1 or len(kernel) not in (1, 2) or \
            len(x_shape) != len(kernel) + 2 or not all(isinstance(d, (int, np.integer)) for d in w_shape):
        return False
    if not has_avx512():
        return False
    geo = window_geometry(node, list(x_shape[2:]), kernel)
    # Strided 1x1 convolutions (ResNet's downsampling) read one phase plane of the SH x SW the kernel would
    # build: BLAS's strided im2col is cheaper there. So is it for strided convolutions with few taps per output
    # (MobileNetV2's 3x3 stride-2 stem over RGB, 27 taps: 0.57 ms direct, 0.25 ms BLAS), where copying the
    # image into phase planes costs as much as the arithmetic.
    strided = any(s != 1 for s in geo.strides)
    if strided and (all(k == 1 for k in kernel) or int(np.prod(w_shape[1:])) < 64):
        return False
    # 1x1 convolutions to few channels from a few more than FEW_TAPS (MobileNetV2's 96->24 projection over 56x56)
    # measured no faster direct than with BLAS; from at most FEW_TAPS (its 32->16 over 112x112: 0.154 -> 0.131 ms)
    # the direct kernel's few-taps order is faster.
    return not (all(k == 1 for k in kernel) and int(w_shape[0]) <= 24 and FEW_TAPS < int(w_shape[1]) <= 96)


def uses_winograd(node, x_shape, w_shape, dtype, options: KernelOptions = DEFAULTS) -> bool:
    """Whether a Conv that ``uses_direct`` (the caller, ``kernel_kind``, checked) runs as Winograd F(2x2, 3x3)
    instead: 3x3, stride 1, no dilation, on images of at least 8 x 8 (ResNet's 3x3 convolutions but the strided
    ones). 16 multiplications per 2x2 outputs instead of 36; the option ``winograd=false`` keeps the direct
    kernel."""
    if not options.winograd:
        return False
    kernel = node.attr("kernel_shape") or list(w_shape[2:])
    size = [_known(d) for d in x_shape[2:]]
    if list(kernel) != [3, 3] or None in size:
        return False
    geo = window_geometry(node, size, kernel)
    return all(s == 1 for s in geo.strides) and all(d == 1 for d in geo.dilations) and min(geo.out) >= 8


def kernel_kind(node, x_shape, w_shape, dtype, implementation: str = "",
                options: KernelOptions = DEFAULTS) -> str | None:
    """Which form of the direct kernel a Conv runs, None for none: 'winograd' (``uses_winograd``), 'channels'
    (vectors over output channels, for output rows of at most 14 and at least 2048 taps: a vector of positions
    fills 49 of 64 lanes on a 7x7 image; with fewer taps its per-tile stores cost more than that) or 'packed'
    (vectors over positions). Measured against each other (benchmarks/conv_layers.py): ResNet-18's 512-channel 7x7
    layers 1.79 -> 1.44 ms, its 14x14 stride-2 one 0.95 -> 0.79 ms; 1x1 layers of 96-960 taps on 7x7 and 14x14
    equal or (96 taps) 3.5x slower. ``implementation``: the op node's, where ``select.select_kernels`` chose the
    form already (its first ``+`` part names it)."""
    chosen = implementation.split("+")[0]
    if chosen in IMPLEMENTATION_KINDS:
        return IMPLEMENTATION_KINDS[chosen]
    if not uses_direct(node, x_shape, w_shape, dtype, options):
        return None
    if uses_winograd(node, x_shape, w_shape, dtype, options):
        return "winograd"
    kernel = node.attr("kernel_shape") or list(w_shape[2:])
    size = [_known(d) for d in x_shape[2:]]
    if None not in size and options.channel_vectors:
        width = window_geometry(node, size, kernel).out[-1]
        if width <= CHANNEL_ROWS and int(np.prod(w_shape[1:])) >= CHANNEL_TAPS:
            return "channels"
    return "packed"


# Implementation names (an op node's ``implementation``, set by select.select_kernels) -> kernel_kind's forms.
IMPLEMENTATION_KINDS = {"winograd": "winograd", "direct-channels": "channels", "direct": "packed", "im2col": None}
FEW_TAPS = 64  # convolutions with at most this many taps loop over channel blocks outermost (see _DIRECT)
CHANNEL_ROWS, CHANNEL_TAPS = 14, 2048  # the channel-vector form: output rows up to 14 wide, at least 2048 taps


def _known(dim) -> int | None:
    """A dimension's value, None for a symbol."""
    try:
        return int(dim)
    except TypeError:
        return None


def packed_name(weight: str, kind: str = "packed") -> str:
    return f"{weight}__{kind}{16 if kind == 'channels' else BLOCK}"


def _aligned(array: np.ndarray) -> np.ndarray:
    """A 64-byte aligned float32 copy (the kernels' vector loads)."""
    storage = np.empty(array.size + 16, np.float32)
    offset = (-storage.ctypes.data % 64) // 4
    aligned = storage[offset:offset + array.size].reshape(array.shape)
    aligned[...] = array
    return aligned


def _blocks(weight: np.ndarray, block: int) -> np.ndarray:
    """[M, C, *kernel] -> [ceil(M / block), C * prod(kernel), block] (output channels past M are zeros), 64-byte
    aligned (the kernels' vector loads)."""
    m = weight.shape[0]
    k = int(np.prod(weight.shape[1:]))
    blocks = -(-m // block)
    flat = np.zeros((blocks * block, k), np.float32)
    flat[:m] = weight.reshape(m, k)
    return _aligned(flat.reshape(blocks, block, k).transpose(0, 2, 1))


def pack(weight: np.ndarray) -> np.ndarray:
    """The direct kernel's weights: blocks of 8 output channels, [ceil(M / 8), C * prod(kernel), 8]."""
    return _blocks(weight, BLOCK)


def channels_pack(weight: np.ndarray) -> np.ndarray:
    """The channel-vector form's weights: blocks of 16 output channels, [ceil(M / 16), C * prod(kernel), 16]."""
    return _blocks(weight, 16)


# Winograd F(2x2, 3x3): Y = A^T [(G g G^T) * (B^T d B)] A for each 2x2 output tile, d its 4x4 input patch.
_G = np.array([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]], np.float64)


def winograd_pack(weight: np.ndarray) -> np.ndarray:
    """[M, C, 3, 3] -> the transformed weights G g G^T as [16][ceil(M / 8)][C][8] (element (u, v) of the 4x4
    transform is index u * 4 + v; output channels past M are zeros), 64-byte aligned."""
    m, c = weight.shape[:2]
    u = np.einsum("ik,mckl,jl->ijmc", _G, weight.astype(np.float64), _G).reshape(16, m, c)
    blocks = -(-m // BLOCK)
    flat = np.zeros((16, blocks * BLOCK, c), np.float32)
    flat[:, :m] = u
    return _aligned(flat.reshape(16, blocks, BLOCK, c).transpose(0, 1, 3, 2))


def weight_value(constant, name: str) -> np.ndarray:
    """The array passed as weight ``name``: the graph constant itself, or the packed form of one
    (``constant(name)`` looks up a graph constant)."""
    match = _PACKED.fullmatch(name)
    try:
        return np.asarray(constant(name), order="C")
    except KeyError:
        if match is None:
            raise
    return _PACKERS[match[2]](np.asarray(constant(match[1]), np.float32))


# Register tile: CH (8 or 4) output channels x NV vectors of 16 output positions, over K taps. Position j of the
# tile reads x + koff[k] + j at tap k; w points at the tile's first channel in the block's packed weights [K][8];
# the first `rows` channels are stored to y, ldy apart (the output planes, or a tile buffer). `tail`: the lanes of
# the last vector that are positions. Without AVX-512 the same loops in plain C++.
_KERNELS = r"""
#ifndef SDFLOW_DIRECT_CONV_KERNELS
#define SDFLOW_DIRECT_CONV_KERNELS
#include <cstdint>
#include <omp.h>
#include <immintrin.h>
namespace sdflow_direct {
constexpr int64_t TILE = 48;      // positions per tile: 8 channels x 3 vectors, 24 accumulators
constexpr int64_t TILE_MAX = 64;  // a last tile of up to 64 positions (see positions)
// Tiles over q positions: of TILE each, a remainder of up to TILE_MAX - TILE joining the last full one.
static inline int64_t tiles(int64_t q) {
  const int64_t n = (q + TILE - 1) / TILE;
  return n > 1 && q - (n - 1) * TILE <= TILE_MAX - TILE ? n - 1 : n;
}
template <int CH, int NV>
static inline void taps(const float* __restrict x, const int64_t* __restrict koff, int64_t K,
                        const float* __restrict w, float* __restrict y, int64_t ldy, int64_t rows, uint32_t tail) {
#ifdef __AVX512F__
  __m512 acc[CH][NV];
  for (int i = 0; i < CH; ++i)
    for (int v = 0; v < NV; ++v) acc[i][v] = _mm512_setzero_ps();
  for (int64_t k = 0; k < K; ++k) {
    const float* xk = x + koff[k];
    __m512 xv[NV];
    for (int v = 0; v < NV; ++v) {
      xv[v] = v == NV - 1 ? _mm512_maskz_loadu_ps((__mmask16)tail, xk + v * 16) : _mm512_loadu_ps(xk + v * 16);
    }
    for (int i = 0; i < CH; ++i) {
      const __m512 b = _mm512_set1_ps(w[k * 8 + i]);
      for (int v = 0; v < NV; ++v) acc[i][v] = _mm512_fmadd_ps(b, xv[v], acc[i][v]);
    }
  }
  for (int64_t i = 0; i < rows; ++i)
    for (int v = 0; v < NV; ++v) {
      if (v == NV - 1) _mm512_mask_storeu_ps(y + i * ldy + v * 16, (__mmask16)tail, acc[i][v]);
      else _mm512_storeu_ps(y + i * ldy + v * 16, acc[i][v]);
    }
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
static inline void remainder(const float* __restrict x, const int64_t* __restrict koff, int64_t K,
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
static inline void positions(const float* x, const int64_t* koff, int64_t K, const float* w, float* y, int64_t ldy,
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
  }
  else if (count > 48) {
    taps<4, 4>(x, koff, K, w, y, ldy, rows < 4 ? rows : 4, tail);
    if (rows > 4) taps<4, 4>(x, koff, K, w + 4, y + 4 * ldy, ldy, rows - 4, tail);
  }
  else if (count > 32) taps<8, 3>(x, koff, K, w, y, ldy, rows, tail);
  else if (count > 16) taps<8, 2>(x, koff, K, w, y, ldy, rows, tail);
  else taps<8, 1>(x, koff, K, w, y, ldy, rows, tail);
}
// Register tile with vectors over output channels: P consecutive positions x NC blocks of 16 output channels
// (P * NC <= 24 accumulators). Position p reads x + koff[k] + p at tap k (one broadcast), block v's weights are
// w + v * wstride + k * 16 (64-byte aligned). The sums go to out[p * 48 + v * 16 + j] (channel j of block v).
// Every lane is an output channel, where a position vector of a 7x7 image fills 49 of 64 lanes.
template <int P, int NC>
static void channels(const float* __restrict x, const int64_t* __restrict koff, int64_t K,
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
static inline channels_kernel channels_for(int64_t P, int64_t NC) {
  static const channels_kernel table[8][3] = {
      {channels<1, 1>, channels<1, 2>, channels<1, 3>}, {channels<2, 1>, channels<2, 2>, channels<2, 3>},
      {channels<3, 1>, channels<3, 2>, channels<3, 3>}, {channels<4, 1>, channels<4, 2>, channels<4, 3>},
      {channels<5, 1>, channels<5, 2>, channels<5, 3>}, {channels<6, 1>, channels<6, 2>, channels<6, 3>},
      {channels<7, 1>, channels<7, 2>, channels<7, 3>}, {channels<8, 1>, channels<8, 2>, channels<8, 3>}};
  return table[P - 1][NC - 1];
}
}  // namespace sdflow_direct
#endif
"""

DIRECT_INCLUDES = _KERNELS

# What the position- and channel-vector forms share, after the geometry constants and M_, KK_, P_, X_, Y_ (and
# nn.CONV_INCLUDES' helpers): the source image (padded phase planes, or X_ itself), each tap's offset in it
# (koff_), and the flat range of positions Q_ over the phase planes' rows, q -> output (q / W2_, q % W2_) when
# q % W2_ < OW_ (the columns past each row's end are computed and dropped: small images still fill whole tiles).
_SOURCE = """
// The image, zero-padded, as SH_ x SW_ phase planes of H2_ x W2_ (stride 1: one plane, the padded image): phase
// (a, b) holds the padded pixels (i * SH_ + a, j * SW_ + b), so a strided convolution reads each phase with
// stride 1 and every tap is a run of consecutive floats.
const int64_t HP_ = H_ + PT_ + PB_, WP_ = W_ + PL_ + PR_;
const int64_t H2_ = (HP_ + SH_ - 1) / SH_, W2_ = (WP_ + SW_ - 1) / SW_, PLANE2_ = H2_ * W2_;
const int64_t PHASES_ = SH_ * SW_;
const float* source_ = X_;
static thread_local std::vector<float> padded_;  // the caller's; the workers only write into it
if (PT_ || PB_ || PL_ || PR_ || PHASES_ > 1) {
  if (padded_.size() < (size_t)(N_ * C_ * PHASES_ * PLANE2_)) padded_.resize(N_ * C_ * PHASES_ * PLANE2_);
  float* pad_ = padded_.data();
  #pragma omp parallel for
  for (int64_t plane_ = 0; plane_ < N_ * C_ * PHASES_; ++plane_) {
    const int64_t phase_ = plane_ % PHASES_;
    sdflow_conv::pad_phase(X_ + (plane_ / PHASES_) * H_ * W_, H_, W_, PT_, PL_, SH_, SW_, phase_ / SW_,
                           phase_ % SW_, H2_, W2_, pad_ + plane_ * PLANE2_);
  }
  source_ = pad_;
}
static thread_local std::vector<int64_t> taps_;
taps_.resize(KK_);
for (int64_t c_ = 0; c_ < C_; ++c_)
  for (int64_t kh_ = 0; kh_ < KH_; ++kh_)
    for (int64_t kw_ = 0; kw_ < KW_; ++kw_)
      taps_[(c_ * KH_ + kh_) * KW_ + kw_] =
          c_ * PHASES_ * PLANE2_ + sdflow_conv::phase_offset(kh_ * DH_, kw_ * DW_, SH_, SW_, H2_, W2_);
const int64_t* koff_ = taps_.data();
// The last position read is the last output's: columns after it would read past the image.
const int64_t Q_ = OH_ > 0 && OW_ > 0 ? (OH_ - 1) * W2_ + OW_ : 0;
"""

# Position vectors: tiles of 48 positions (the last up to 64) x blocks of 8 output channels; each tile is stored
# as row segments, the epilogue running on each while it is in cache. PACKED_: [MB_][KK_][8].
_DIRECT = _SOURCE + """
constexpr int64_t TILE_ = sdflow_direct::TILE, TILE_MAX_ = sdflow_direct::TILE_MAX;
const int64_t MB_ = (M_ + 7) / 8;
const int64_t tiles_ = sdflow_direct::tiles(Q_);
const int64_t threads_ = omp_get_max_threads();
// Tasks: (sample and tile, group of channel blocks), or with few taps (KK_ <= FEW_TAPS_: 1x1 convolutions from
// few channels, whose time goes into writing the outputs) (run of tiles, all blocks) with the blocks outermost:
// the tiles of one block write 8 output planes one after another (streams the prefetcher follows), where a tile
// of every block wrote to all M planes at once (MobileNetV2's 16 -> 96 expansion over 112x112 took twice ONNX
// Runtime's time).
const bool few_taps_ = KK_ <= FEW_TAPS_;
int64_t groups_ = 1;
while (!few_taps_ && N_ * tiles_ * groups_ < 4 * threads_ && groups_ < MB_) groups_ *= 2;
groups_ = std::min(groups_, MB_);
const int64_t per_group_ = (MB_ + groups_ - 1) / groups_;
const int64_t run_ = few_taps_ ? std::max<int64_t>(1, (N_ * tiles_) / (4 * threads_)) : 1;
const int64_t runs_ = (N_ * tiles_ + run_ - 1) / run_;
#pragma omp parallel for schedule(dynamic)
for (int64_t t_ = 0; t_ < runs_ * groups_; ++t_) {
  const int64_t first_ = (t_ / groups_) * run_, last_ = std::min(N_ * tiles_, first_ + run_), group_ = t_ % groups_;
  const int64_t mb0_ = group_ * per_group_, mb1_ = std::min(MB_, (group_ + 1) * per_group_);
  alignas(64) float tile_[8 * TILE_MAX_];
  // Channel blocks [b0, b1) of tile `f` (sample f / tiles_).
  auto blocks_of_tile_ = [&](int64_t f_, int64_t b0_, int64_t b1_) {
  const int64_t n_ = f_ / tiles_, tile_index_ = f_ % tiles_;
  const int64_t q0_ = tile_index_ * TILE_, count_ = tile_index_ == tiles_ - 1 ? Q_ - q0_ : TILE_;
  const float* x_ = source_ + n_ * C_ * PHASES_ * PLANE2_ + q0_;
  // The tile's row segments: offset in the tile, output position, length.
  int64_t segments_ = 0, from_[TILE_MAX_], at_[TILE_MAX_], length_[TILE_MAX_];
  if (W2_ == OW_) {  // no padding columns (1x1): the tile is one run of outputs
    segments_ = 1; from_[0] = 0; at_[0] = q0_; length_[0] = count_;
  } else {  // one division per tile, not per row (this runs once per tile and channel block)
    int64_t row_ = q0_ / W2_, column_ = q0_ - row_ * W2_;
    for (int64_t q_ = q0_; q_ < q0_ + count_; ++row_, column_ = 0) {
      const int64_t row_end_ = std::min(q0_ + count_, (row_ + 1) * W2_);
      const int64_t valid_ = std::min(row_end_ - q_, OW_ - column_);
      if (valid_ > 0) {
        const int64_t at_here_ = row_ * OW_ + column_;
        if (segments_ > 0 && at_[segments_ - 1] + length_[segments_ - 1] == at_here_ &&
            from_[segments_ - 1] + length_[segments_ - 1] == q_ - q0_) {
          length_[segments_ - 1] += valid_;  // rows without padding columns continue the previous run
        } else {
          from_[segments_] = q_ - q0_; at_[segments_] = at_here_; length_[segments_] = valid_;
          ++segments_;
        }
      }
      q_ = row_end_;
    }
  }
  // A tile that is one run of outputs (unpadded 1x1 convolutions, or inside a row) is stored straight into the
  // output planes; others go through a buffer, row segment by row segment.
  const bool whole_ = segments_ == 1 && length_[0] == count_;
  for (int64_t mb_ = b0_; mb_ < b1_; ++mb_) {
    const int64_t rows_ = std::min<int64_t>(8, M_ - mb_ * 8);  // 8: BLOCK
    const float* w_ = PACKED_ + mb_ * KK_ * 8;
    if (whole_) sdflow_direct::positions(x_, koff_, KK_, w_, Y_ + (n_ * M_ + mb_ * 8) * P_ + at_[0], P_, rows_, count_);
    else sdflow_direct::positions(x_, koff_, KK_, w_, tile_, TILE_MAX_, rows_, count_);
    for (int64_t m_ = mb_ * 8; m_ < mb_ * 8 + rows_; ++m_) {
      float* out_ = Y_ + (n_ * M_ + m_) * P_;
      const float* values_ = tile_ + (m_ - mb_ * 8) * TILE_MAX_;
      for (int64_t s_ = 0; s_ < segments_; ++s_) {
        const int64_t p0_ = at_[s_], width_ = length_[s_];
        if (whole_) {  // stored in place by the kernel
          TILE_EPILOGUE
        } else {  // from the tile buffer, the epilogue applied on the way
          const float* src_ = values_ + from_[s_];
          const int64_t step_ = 1;
          STORE_EPILOGUE
        }
      }
    }
  }
  };
  if (few_taps_) {
    for (int64_t mb_ = mb0_; mb_ < mb1_; ++mb_)
      for (int64_t f_ = first_; f_ < last_; ++f_) blocks_of_tile_(f_, mb_, mb_ + 1);
  } else {
    for (int64_t f_ = first_; f_ < last_; ++f_) blocks_of_tile_(f_, mb0_, mb1_);
  }
}
"""


# Vectors over output channels (small images: output rows of at most 14), after the same constants as _DIRECT;
# PACKED_ holds the weights as blocks of 16 output channels, [MB16_][KK_][16]. Tasks: (channel tile of 3 blocks,
# sample, output row, chunk of at most 8 positions of the row), channel tile outermost so that the tasks running
# together share its weights. The positions of a chunk are consecutive in the (phase planes') rows and in the
# output plane; each channel's run is stored and its epilogue applied while in cache.
_CHANNELS = _SOURCE + """
const int64_t MB16_ = (M_ + 15) / 16, MT_ = (MB16_ + 2) / 3;
const int64_t CHUNKS_ = (OW_ + 7) / 8, PER_CHUNK_ = CHUNKS_ > 0 ? (OW_ + CHUNKS_ - 1) / CHUNKS_ : 0;
const int64_t ROWTASKS_ = N_ * OH_ * CHUNKS_;
#pragma omp parallel for schedule(dynamic)
for (int64_t t_ = 0; t_ < MT_ * ROWTASKS_; ++t_) {
  const int64_t mt_ = t_ / ROWTASKS_, n_ = (t_ % ROWTASKS_) / (OH_ * CHUNKS_);
  const int64_t oh_ = (t_ % (OH_ * CHUNKS_)) / CHUNKS_, ow0_ = (t_ % CHUNKS_) * PER_CHUNK_;
  const int64_t count_ = std::min(PER_CHUNK_, OW_ - ow0_), blocks_ = std::min<int64_t>(3, MB16_ - mt_ * 3);
  if (count_ <= 0) continue;
  alignas(64) float sums_[8 * 48];
  sdflow_direct::channels_for(count_, blocks_)(source_ + n_ * C_ * PHASES_ * PLANE2_ + oh_ * W2_ + ow0_, koff_, KK_,
                                               PACKED_ + mt_ * 3 * KK_ * 16, KK_ * 16, sums_);
  const int64_t p0_ = oh_ * OW_ + ow0_, width_ = count_;
  for (int64_t m_ = mt_ * 48; m_ < std::min(M_, mt_ * 48 + blocks_ * 16); ++m_) {
    float* out_ = Y_ + (n_ * M_ + m_) * P_;
    const float* src_ = sums_ + (m_ - mt_ * 48);
    const int64_t step_ = 48;
    STORE_EPILOGUE
  }
}
"""


# Winograd F(2x2, 3x3) (stride 1), after the same constants as _DIRECT; PACKED_ holds the transformed weights
# [16][MB_][C_][8]. The zero-padded image is split into 2 x 2 phase planes of H2_ x W2_, so that element (u, v) of
# the 4x4 input patch of output tile (i, j) - padded pixel (2i + u, 2j + v) - is pixel (i + u / 2, j + v / 2) of
# phase (u % 2, v % 2): for consecutive tiles of a row, consecutive floats. The tiles run as one flat range over the
# phase planes' rows (tiles past a row's end are computed and dropped). Tasks: (sample, block of 48 tiles, group of
# 8-channel blocks). Per task: the input transform V = B^T d B of every channel into [16][C_][48]; per channel block
# 16 products (the 16 elements (u, v)) of its transformed weights [C_][8] with V's [C_][48], each the direct
# kernel's register tile with the channels as taps; the output transform A^T m A into 2 x 2 outputs per tile,
# stored by row segments with the epilogue.
_WINOGRAD = """
constexpr int64_t TB_ = sdflow_direct::TILE;
const int64_t MB_ = (M_ + 7) / 8;
const int64_t OH2_ = (OH_ + 1) / 2, OW2_ = (OW_ + 1) / 2, H2_ = OH2_ + 1, W2_ = OW2_ + 1, PLANE2_ = H2_ * W2_;
static thread_local std::vector<float> padded_;  // the caller's; the workers only write into it
// Slack past the last plane: the last vector of a block reads up to 15 lanes past its tiles.
const size_t padded_size_ = (size_t)(N_ * C_ * 4 * PLANE2_ + W2_ + 32);
if (padded_.size() < padded_size_) padded_.resize(padded_size_);
float* pad_ = padded_.data();
#pragma omp parallel for
for (int64_t plane_ = 0; plane_ < N_ * C_ * 4; ++plane_) {
  const int64_t phase_ = plane_ % 4;
  sdflow_conv::pad_phase(X_ + (plane_ / 4) * H_ * W_, H_, W_, PT_, PL_, 2, 2, phase_ / 2, phase_ % 2, H2_, W2_,
                         pad_ + plane_ * PLANE2_);
}
static thread_local std::vector<int64_t> channels_;  // channel c of V at c * TB_: the "taps" of the products
channels_.resize(C_);
for (int64_t c_ = 0; c_ < C_; ++c_) channels_[c_] = c_ * TB_;
const int64_t* koff_ = channels_.data();
const int64_t TQ_ = OH2_ > 0 && OW2_ > 0 ? (OH2_ - 1) * W2_ + OW2_ : 0;
// Blocks of 48 tiles, the last one shorter: a last block of 49-64 (the direct kernel's 4 x 4 vectors) measured
// slower here, its 16 products each reading V twice.
const int64_t blocks_ = (TQ_ + TB_ - 1) / TB_;
const int64_t threads_ = omp_get_max_threads();
int64_t groups_ = 1;
while (N_ * blocks_ * groups_ < 4 * threads_ && groups_ < MB_) groups_ *= 2;
groups_ = std::min(groups_, MB_);
const int64_t per_group_ = (MB_ + groups_ - 1) / groups_;
#pragma omp parallel
{
  static thread_local std::vector<float> transformed_;  // V, per thread
  if (transformed_.size() < (size_t)(16 * C_ * TB_)) transformed_.resize(16 * C_ * TB_);
  float* V_ = transformed_.data();
  #pragma omp for schedule(dynamic)
  for (int64_t t_ = 0; t_ < N_ * blocks_ * groups_; ++t_) {
    const int64_t n_ = t_ / (blocks_ * groups_), q0_ = ((t_ / groups_) % blocks_) * TB_, group_ = t_ % groups_;
    const int64_t count_ = std::min(TB_, TQ_ - q0_);
    const int64_t lanes_ = (count_ + 15) / 16 * 16;
    const float* image_ = pad_ + n_ * C_ * 4 * PLANE2_ + q0_;
    for (int64_t c_ = 0; c_ < C_; ++c_) {
      const float* phase_[4];
      for (int64_t f_ = 0; f_ < 4; ++f_) phase_[f_] = image_ + (c_ * 4 + f_) * PLANE2_;
      float* v_ = V_ + c_ * TB_;
      #pragma omp simd
      for (int64_t j_ = 0; j_ < lanes_; ++j_) {
        float d_[4][4], e_[4][4];
        for (int u_ = 0; u_ < 4; ++u_)
          for (int w_ = 0; w_ < 4; ++w_) d_[u_][w_] = phase_[(u_ % 2) * 2 + w_ % 2][(u_ / 2) * W2_ + w_ / 2 + j_];
        for (int w_ = 0; w_ < 4; ++w_) {  // B^T d
          e_[0][w_] = d_[0][w_] - d_[2][w_]; e_[1][w_] = d_[1][w_] + d_[2][w_];
          e_[2][w_] = d_[2][w_] - d_[1][w_]; e_[3][w_] = d_[1][w_] - d_[3][w_];
        }
        for (int u_ = 0; u_ < 4; ++u_) {  // (B^T d) B
          v_[(u_ * 4 + 0) * C_ * TB_ + j_] = e_[u_][0] - e_[u_][2];
          v_[(u_ * 4 + 1) * C_ * TB_ + j_] = e_[u_][1] + e_[u_][2];
          v_[(u_ * 4 + 2) * C_ * TB_ + j_] = e_[u_][2] - e_[u_][1];
          v_[(u_ * 4 + 3) * C_ * TB_ + j_] = e_[u_][1] - e_[u_][3];
        }
      }
    }
    // The block's row segments, per output row of its tiles: offset in the block's outputs, output position, length.
    int64_t segments_ = 0, from_[2 * TB_ + 2], at_[2 * TB_ + 2], length_[2 * TB_ + 2];
    for (int64_t q_ = q0_; q_ < q0_ + count_;) {
      const int64_t row_ = q_ / W2_, column_ = q_ - row_ * W2_;
      const int64_t row_end_ = std::min(q0_ + count_, (row_ + 1) * W2_);
      const int64_t tiles_ = std::min(row_end_ - q_, OW2_ - column_);
      for (int64_t r_ = 0; r_ < 2 && tiles_ > 0; ++r_) {
        if (2 * row_ + r_ >= OH_) break;
        from_[segments_] = r_ * 2 * TB_ + 2 * (q_ - q0_);
        at_[segments_] = (2 * row_ + r_) * OW_ + 2 * column_;
        length_[segments_] = std::min(2 * tiles_, OW_ - 2 * column_);
        ++segments_;
      }
      q_ = row_end_;
    }
    alignas(64) float products_[16 * 8 * TB_];
    alignas(64) float outputs_[8 * 4 * TB_];
    for (int64_t mb_ = group_ * per_group_; mb_ < std::min(MB_, (group_ + 1) * per_group_); ++mb_) {
      const int64_t rows_ = std::min<int64_t>(8, M_ - mb_ * 8);
      for (int64_t e_ = 0; e_ < 16; ++e_)
        sdflow_direct::positions(V_ + e_ * C_ * TB_, koff_, C_, PACKED_ + (e_ * MB_ + mb_) * C_ * 8,
                                 products_ + e_ * 8 * TB_, TB_, 8, count_);
      for (int64_t i_ = 0; i_ < rows_; ++i_) {
        const float* m_of_ = products_ + i_ * TB_;
        float* o_ = outputs_ + i_ * 4 * TB_;
        #pragma omp simd
        for (int64_t j_ = 0; j_ < count_; ++j_) {  // A^T m A
          float s_[2][4];
          for (int w_ = 0; w_ < 4; ++w_) {
            const float m0_ = m_of_[(0 + w_) * 8 * TB_ + j_], m1_ = m_of_[(4 + w_) * 8 * TB_ + j_];
            const float m2_ = m_of_[(8 + w_) * 8 * TB_ + j_], m3_ = m_of_[(12 + w_) * 8 * TB_ + j_];
            s_[0][w_] = m0_ + m1_ + m2_;
            s_[1][w_] = m1_ - m2_ - m3_;
          }
          for (int r_ = 0; r_ < 2; ++r_) {
            o_[r_ * 2 * TB_ + 2 * j_] = s_[r_][0] + s_[r_][1] + s_[r_][2];
            o_[r_ * 2 * TB_ + 2 * j_ + 1] = s_[r_][1] - s_[r_][2] - s_[r_][3];
          }
        }
      }
      for (int64_t m_ = mb_ * 8; m_ < mb_ * 8 + rows_; ++m_) {
        float* out_ = Y_ + (n_ * M_ + m_) * P_;
        const float* values_ = outputs_ + (m_ - mb_ * 8) * 4 * TB_;
        for (int64_t s_ = 0; s_ < segments_; ++s_) {
          const int64_t p0_ = at_[s_], width_ = length_[s_];
          const float* src_ = values_ + from_[s_];
          const int64_t step_ = 1;
          STORE_EPILOGUE
        }
      }
    }
  }
}
"""


def direct_code(packed: str, kind: str = "packed") -> str:
    """The C++ body of the direct kernel (kind 'packed'), its Winograd form ('winograd') or its channel-vector form
    ('channels') after ``nn.conv_code``'s constants (``TILE_EPILOGUE`` and ``STORE_EPILOGUE`` still to fill);
    ``packed`` points at the packed (or transformed) weights."""
    if kind == "packed":
        return f"const float* PACKED_ = {packed};\nconst int64_t FEW_TAPS_ = {FEW_TAPS};\n" + _DIRECT
    return f"const float* PACKED_ = {packed};\n" + {"winograd": _WINOGRAD, "channels": _CHANNELS}[kind]


_PACKERS = {"packed": pack, "winograd": winograd_pack, "channels": channels_pack}


def prepack(graph, weights: dict) -> int:
    """Gives every Conv (and fused convolution) that the direct kernel serves its packed weights, laid out for the
    form ``kernel_kind`` picks: a new weight ``<W>__packed8``, ``<W>__winograd8`` or ``<W>__channels16`` (added to
    ``weights``) on the node's ``packed_weight`` connector. ``weights``: the graph's
    constants, by name (a weight computed at run time keeps im2col + BLAS). Returns how many nodes got one."""
    sdfg, state = graph.sdfg, graph.state
    count = 0
    for node in graph.op_nodes():
        if node.op_type == "Conv" and not node.domain_name:
            conv, positions = node, (0, 1)
        elif node.op_type == "Fused" and node.parsed.kind in ("conv", "conv_depthwise"):
            step = node.parsed.steps[0]
            conv, positions = step.node(), tuple(int(a[2:]) for a in step.args[:2])
        else:
            continue
        inputs = graph.node_inputs(node)
        x, w = (inputs[p] for p in positions)
        if w not in weights or PACKED_CONNECTOR in node.in_connectors:
            continue
        x_desc = sdfg.arrays[x]
        kind = kernel_kind(conv, list(x_desc.shape), list(weights[w].shape), x_desc.dtype.as_numpy_dtype(),
                           node.implementation or "")
        if kind is None:
            continue
        name = packed_name(w, kind)
        if name not in weights:
            weights[name] = _PACKERS[kind](np.asarray(weights[w], np.float32))
            sdfg.add_array(name, weights[name].shape, dace.float32)
        node.add_in_connector(PACKED_CONNECTOR)
        state.add_edge(state.add_read(name), None, node, PACKED_CONNECTOR,
                       dace.Memlet.from_array(name, sdfg.arrays[name]))
        count += 1
    return count
