// int8 GEMM with dynamically quantized activations: Y[m x n] = dequant(quant(A[m x k]) . B[k x n]) (+ bias[n]),
// the product of sdflow's QuantizedMatMul (ai.sdflow; quantize-dynamic-int8 and quantize-static-int8 write it).
//
// - A (float32, rows lda apart) is quantized to uint8 with a scale and zero point from calibration
//   (quantize-static-int8), or when the product runs, as DynamicQuantizeLinear does
//   (scale = (max(0, max a) - min(0, min a)) / 255, zero point = round(-min / scale), q = sat(round(a / scale) + z),
//   rounding half to even): over the whole tensor (`per_row` false, ONNX Runtime's semantics) or over each row
//   (`per_row` true: a row of small values keeps its resolution next to a row with an outlier).
// - B (int8, symmetric: zero point 0) is packed once when the model loads: panels of NR (16) columns, each
//   [ceil(k / 4)][16][4] bytes (four consecutive k of a column side by side, k padded with zeros), followed by the
//   sum over k of each column (int32), which takes A's zero point out of the product:
//   sum_p (qa - za) b = sum_p qa b - za * colsum(b).
// - Accumulation in int32 (exact up to k = 65,000), then y = (acc - za * colsum) * (scale_a * scale_b[j]) + bias.
//
// Forms, all exact (the same int32 sums): AVX-512 VNNI (vpdpbusd: 64 uint8 x int8 products into 16 int32 per
// instruction) where the compiler targets it; AVX2 with vpmaddubsw + vpmaddwd where the weights' pairs fit int16
// (pairs_fit_int16), else AVX2 with both operands widened to int16 (vpmaddwd); otherwise plain loops. All read the
// same packed layout. Work is split into tiles of rows x panels handed out one at
// a time (schedule(dynamic)), as gemm.h does, so a busy core takes fewer tiles.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <vector>

#if defined(__AVX2__) || defined(__AVX512F__)
#include <immintrin.h>
#endif
#if defined(_OPENMP)
#include <omp.h>
#endif

#include "gemm.h"

namespace sdflow_kernels {
namespace qgemm {

constexpr int64_t NR = 16;  // columns of a packed panel (one AVX-512 vector of 16 int32 accumulators)
constexpr int64_t MC = 64;  // rows of a tile
#if defined(__AVX512VNNI__) && defined(__AVX512BW__)
constexpr int64_t TILE_ROWS = 8, TILE_PANELS = 2;  // 16 accumulators of 16 int32
#elif defined(__AVX2__)
constexpr int64_t TILE_ROWS = 3, TILE_PANELS = 1;  // 12 accumulators of 8 int32 (the int16 form)
#else
constexpr int64_t TILE_ROWS = 4, TILE_PANELS = 1;
#endif

inline int64_t panels(int64_t n) { return (n + NR - 1) / NR; }
inline int64_t k4(int64_t k) { return (k + 3) / 4; }

// Bytes of the packed form of a k x n int8 matrix: the panels, one int32 column sum per padded column, and one
// int32 flag: 1 when every pair of consecutive k of a column has |b0| + |b1| <= 128 (then no uint8 x int8 pair sum
// leaves int16, and AVX2's vpmaddubsw is exact; quantize-dynamic-int8{reduce_range=true} makes such weights).
inline int64_t packed_bytes(int64_t k, int64_t n) { return panels(n) * k4(k) * NR * 4 + panels(n) * NR * 4 + 4; }

inline const int32_t* column_sums(const int8_t* packed, int64_t k, int64_t n) {
    return reinterpret_cast<const int32_t*>(packed + panels(n) * k4(k) * NR * 4);
}

inline bool pairs_fit_int16(const int8_t* packed, int64_t k, int64_t n) {
    return column_sums(packed, k, n)[panels(n) * NR] != 0;
}

// Packs B (k x n, rows ldb apart) and appends its column sums.
inline void pack_b(const int8_t* b, int64_t ldb, int64_t k, int64_t n, int8_t* packed) {
    const int64_t groups = k4(k);
    int32_t sums[NR];
    std::vector<int32_t> all(panels(n) * NR + 1, 0);
    bool fit = true;
    for (int64_t panel = 0; panel < panels(n); ++panel) {
        int8_t* out = packed + panel * groups * NR * 4;
        for (int64_t j = 0; j < NR; ++j) sums[j] = 0;
        for (int64_t q = 0; q < groups; ++q)
            for (int64_t j = 0; j < NR; ++j)
                for (int64_t t = 0; t < 4; ++t) {
                    const int64_t p = q * 4 + t, col = panel * NR + j;
                    const int8_t v = (p < k && col < n) ? b[p * ldb + col] : 0;
                    out[(q * NR + j) * 4 + t] = v;
                    sums[j] += v;
                    if (t % 2 == 1) fit = fit && std::abs((int)out[(q * NR + j) * 4 + t - 1]) + std::abs((int)v) <= 128;
                }
        for (int64_t j = 0; j < NR; ++j) all[panel * NR + j] = sums[j];
    }
    all[panels(n) * NR] = fit ? 1 : 0;
    std::memcpy(packed + panels(n) * groups * NR * 4, all.data(), all.size() * sizeof(int32_t));
}

// B (not a constant) packed into the calling thread's buffer, kept between calls.
inline const int8_t* pack_per_call(const int8_t* b, int64_t ldb, int64_t k, int64_t n) {
    static thread_local std::vector<int8_t> buffer;
    if (int64_t(buffer.size()) < packed_bytes(k, n)) buffer.resize(packed_bytes(k, n));
    pack_b(b, ldb, k, n, buffer.data());
    return buffer.data();
}

// The quantization of a run of values: scale and zero point as DynamicQuantizeLinear finds them.
struct RowQuant {
    float scale;
    int32_t zero;
};

inline RowQuant range_quant(float low, float high) {
    low = std::min(low, 0.0f), high = std::max(high, 0.0f);
    const float scale = (high - low) / 255.0f;
    const float zero = scale == 0 ? 0.0f : std::min(255.0f, std::max(0.0f, std::nearbyint(-low / scale)));
    return {scale, (int32_t)zero};
}

inline void min_max(const float* x, int64_t k, float& low, float& high) {
    int64_t p = 0;
#if defined(__AVX512F__)
    __m512 lo = _mm512_set1_ps(low), hi = _mm512_set1_ps(high);
    for (; p + 16 <= k; p += 16) {
        const __m512 v = _mm512_loadu_ps(x + p);
        lo = _mm512_min_ps(lo, v), hi = _mm512_max_ps(hi, v);
    }
    low = _mm512_reduce_min_ps(lo), high = _mm512_reduce_max_ps(hi);
#endif
    for (; p < k; ++p) low = std::min(low, x[p]), high = std::max(high, x[p]);
}

// One row of A quantized into q (k4(k) * 4 bytes, the padding 0).
inline void quantize_row(const float* x, int64_t k, RowQuant rq, uint8_t* q) {
    int64_t p = 0;
    if (rq.scale == 0) {
        std::memset(q, 0, k4(k) * 4);
        return;
    }
#if defined(__AVX512F__)
    const __m512 s = _mm512_set1_ps(rq.scale), z = _mm512_set1_ps((float)rq.zero);
    const __m512 zero = _mm512_setzero_ps(), top = _mm512_set1_ps(255.0f);
    for (; p + 16 <= k; p += 16) {
        __m512 v = _mm512_roundscale_ps(_mm512_div_ps(_mm512_loadu_ps(x + p), s), _MM_FROUND_TO_NEAREST_INT);
        v = _mm512_min_ps(top, _mm512_max_ps(zero, _mm512_add_ps(v, z)));
        _mm_storeu_si128(reinterpret_cast<__m128i*>(q + p), _mm512_cvtepi32_epi8(_mm512_cvtps_epi32(v)));
    }
#endif
    for (; p < k; ++p)
        q[p] = (uint8_t)std::min(255.0f, std::max(0.0f, std::nearbyint(x[p] / rq.scale) + (float)rq.zero));
    for (; p < k4(k) * 4; ++p) q[p] = 0;
}

#if defined(__AVX512VNNI__) && defined(__AVX512BW__)
// ROWS x (one or two panels) of Y: q points at the rows' quantized values (ldq bytes apart), b at the first
// panel. `width` columns of the 16 (or 32) are stored.
template <int ROWS, int PANELS>
inline void micro(int64_t groups, const uint8_t* q, int64_t ldq, const int8_t* b, int64_t panel_stride,
                  float* y, int64_t ldy, int64_t width, const RowQuant* rq, const int32_t* sums, const float* b_scale,
                  bool per_column, const float* bias, bool) {
    // One array of ROWS accumulators per panel, loops over rows unrolled: gcc 12 keeps them in registers only so
    // (a 2-D array of vectors stayed on the stack in gemm.h's AVX2 tile).
    __m512i acc0[ROWS], acc1[ROWS];
#pragma GCC unroll 8
    for (int r = 0; r < ROWS; ++r) acc0[r] = acc1[r] = _mm512_setzero_si512();
    for (int64_t g = 0; g < groups; ++g) {
        const __m512i b0 = _mm512_loadu_si512(b + g * NR * 4);
        const __m512i b1 = PANELS > 1 ? _mm512_loadu_si512(b + panel_stride + g * NR * 4) : b0;
#pragma GCC unroll 8
        for (int r = 0; r < ROWS; ++r) {
            int32_t word;
            std::memcpy(&word, q + r * ldq + g * 4, 4);
            const __m512i av = _mm512_set1_epi32(word);
            acc0[r] = _mm512_dpbusd_epi32(acc0[r], av, b0);
            if (PANELS > 1) acc1[r] = _mm512_dpbusd_epi32(acc1[r], av, b1);
        }
    }
    alignas(64) int32_t sums_out[2][ROWS][NR];
#pragma GCC unroll 8
    for (int r = 0; r < ROWS; ++r) {
        _mm512_store_si512(sums_out[0][r], acc0[r]);
        _mm512_store_si512(sums_out[1][r], acc1[r]);
    }
    for (int c = 0; c < PANELS; ++c) {
        const int64_t w = std::min<int64_t>(NR, width - c * NR);
        if (w <= 0) break;
        const __mmask16 mask = w >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << w) - 1);
        const __m512i colsum = _mm512_maskz_loadu_epi32(mask, sums + c * NR);
        const __m512 bs = per_column ? _mm512_maskz_loadu_ps(mask, b_scale + c * NR) : _mm512_set1_ps(b_scale[0]);
        const __m512 bb = bias ? _mm512_maskz_loadu_ps(mask, bias + c * NR) : _mm512_setzero_ps();
        for (int r = 0; r < ROWS; ++r) {
            const __m512i share = _mm512_mullo_epi32(_mm512_set1_epi32(rq[r].zero), colsum);
            const __m512i fixed = _mm512_sub_epi32(_mm512_load_si512(sums_out[c][r]), share);
            const __m512 scale = _mm512_mul_ps(_mm512_set1_ps(rq[r].scale), bs);
            const __m512 v = _mm512_fmadd_ps(_mm512_cvtepi32_ps(fixed), scale, bb);
            _mm512_mask_storeu_ps(y + r * ldy + c * NR, mask, v);
        }
    }
}
#elif defined(__AVX2__)
// The epilogue of one row of a panel: acc holds the 16 columns' int32 sums.
inline void store_row(const int32_t* acc, int64_t w, const RowQuant& rq, const int32_t* sums, const float* b_scale,
                      bool per_column, const float* bias, float* y) {
    for (int64_t j = 0; j < w; ++j) {
        const int32_t fixed = acc[j] - rq.zero * sums[j];
        y[j] = (float)fixed * (rq.scale * b_scale[per_column ? j : 0]) + (bias ? bias[j] : 0.0f);
    }
}

// ROWS x one panel. FIT: vpmaddubsw sums pairs of uint8 x int8 products in int16 (exact for such weights), then
// vpmaddwd by ones sums the two pairs of a column into int32; otherwise the 4 bytes of a column are widened to
// int16 and vpmaddwd sums pairs into int32 (two partial sums per column, added at the end).
template <int ROWS, int PANELS, bool FIT>
inline void micro_avx2(int64_t groups, const uint8_t* q, int64_t ldq, const int8_t* b, float* y, int64_t ldy,
                       int64_t width, const RowQuant* rq, const int32_t* sums, const float* b_scale, bool per_column,
                       const float* bias) {
    alignas(32) int32_t out[NR];
    if (FIT) {
        const __m256i ones = _mm256_set1_epi16(1);
        __m256i acc[ROWS][2];
        for (int r = 0; r < ROWS; ++r) acc[r][0] = acc[r][1] = _mm256_setzero_si256();
        for (int64_t g = 0; g < groups; ++g) {
            const __m256i b0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + g * NR * 4));
            const __m256i b1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + g * NR * 4 + 32));
            for (int r = 0; r < ROWS; ++r) {
                int32_t word;
                std::memcpy(&word, q + r * ldq + g * 4, 4);
                const __m256i av = _mm256_set1_epi32(word);
                acc[r][0] = _mm256_add_epi32(acc[r][0], _mm256_madd_epi16(_mm256_maddubs_epi16(av, b0), ones));
                acc[r][1] = _mm256_add_epi32(acc[r][1], _mm256_madd_epi16(_mm256_maddubs_epi16(av, b1), ones));
            }
        }
        for (int r = 0; r < ROWS; ++r) {
            _mm256_store_si256(reinterpret_cast<__m256i*>(out), acc[r][0]);
            _mm256_store_si256(reinterpret_cast<__m256i*>(out + 8), acc[r][1]);
            store_row(out, std::min<int64_t>(NR, width), rq[r], sums, b_scale, per_column, bias, y + r * ldy);
        }
        return;
    }
    __m256i acc[ROWS][4];  // [row][4 columns each]: (k0 k1, k2 k3) partial sums of 4 columns
    for (int r = 0; r < ROWS; ++r)
        for (int c = 0; c < 4; ++c) acc[r][c] = _mm256_setzero_si256();
    for (int64_t g = 0; g < groups; ++g) {
        __m256i av[ROWS];
        for (int r = 0; r < ROWS; ++r) {
            const uint8_t* a = q + r * ldq + g * 4;
            av[r] = _mm256_set1_epi64x((int64_t)((uint64_t)a[0] | (uint64_t)a[1] << 16 | (uint64_t)a[2] << 32 |
                                                 (uint64_t)a[3] << 48));
        }
        for (int c = 0; c < 4; ++c) {
            const __m256i bv = _mm256_cvtepi8_epi16(
                _mm_loadu_si128(reinterpret_cast<const __m128i*>(b + g * NR * 4 + c * 16)));
            for (int r = 0; r < ROWS; ++r) acc[r][c] = _mm256_add_epi32(acc[r][c], _mm256_madd_epi16(av[r], bv));
        }
    }
    for (int r = 0; r < ROWS; ++r) {
        alignas(32) int32_t parts[32];
        for (int c = 0; c < 4; ++c) _mm256_store_si256(reinterpret_cast<__m256i*>(parts + 8 * c), acc[r][c]);
        for (int j = 0; j < NR; ++j) out[j] = parts[2 * j] + parts[2 * j + 1];
        store_row(out, std::min<int64_t>(NR, width), rq[r], sums, b_scale, per_column, bias, y + r * ldy);
    }
}

template <int ROWS, int PANELS>
inline void micro(int64_t groups, const uint8_t* q, int64_t ldq, const int8_t* b, int64_t panel_stride,
                  float* y, int64_t ldy, int64_t width, const RowQuant* rq, const int32_t* sums, const float* b_scale,
                  bool per_column, const float* bias, bool fit) {
    if (fit)
        micro_avx2<ROWS, PANELS, true>(groups, q, ldq, b, y, ldy, width, rq, sums, b_scale, per_column, bias);
    else
        micro_avx2<ROWS, PANELS, false>(groups, q, ldq, b, y, ldy, width, rq, sums, b_scale, per_column, bias);
}
#else
template <int ROWS, int PANELS>
inline void micro(int64_t groups, const uint8_t* q, int64_t ldq, const int8_t* b, int64_t panel_stride,
                  float* y, int64_t ldy, int64_t width, const RowQuant* rq, const int32_t* sums, const float* b_scale,
                  bool per_column, const float* bias, bool) {
    for (int c = 0; c < PANELS; ++c) {
        const int64_t w = std::min<int64_t>(NR, width - c * NR);
        if (w <= 0) break;
        const int8_t* panel = b + c * panel_stride;
        for (int r = 0; r < ROWS; ++r) {
            int32_t acc[NR] = {};
            const uint8_t* row = q + r * ldq;
            for (int64_t g = 0; g < groups; ++g)
                for (int64_t j = 0; j < NR; ++j)
                    for (int64_t t = 0; t < 4; ++t)
                        acc[j] += (int32_t)row[g * 4 + t] * (int32_t)panel[(g * NR + j) * 4 + t];
            for (int64_t j = 0; j < w; ++j) {
                const int32_t fixed = acc[j] - rq[r].zero * sums[c * NR + j];
                const float scale = rq[r].scale * b_scale[per_column ? c * NR + j : 0];
                y[r * ldy + c * NR + j] = (float)fixed * scale + (bias ? bias[c * NR + j] : 0.0f);
            }
        }
    }
}
#endif

template <int PANELS>
inline void micro_rows(int64_t rows, int64_t groups, const uint8_t* q, int64_t ldq, const int8_t* b,
                       int64_t panel_stride, float* y, int64_t ldy, int64_t width, const RowQuant* rq,
                       const int32_t* sums, const float* b_scale, bool per_column, const float* bias, bool fit) {
#define SDFLOW_QGEMM_ROWS(R)                                                                                      \
    case R:                                                                                                       \
        if (R <= TILE_ROWS)                                                                                       \
            micro<(R <= TILE_ROWS ? R : 1), PANELS>(groups, q, ldq, b, panel_stride, y, ldy, width, rq, sums,     \
                                                    b_scale, per_column, bias, fit);                              \
        break;
    switch (rows) {
        SDFLOW_QGEMM_ROWS(8) SDFLOW_QGEMM_ROWS(7) SDFLOW_QGEMM_ROWS(6) SDFLOW_QGEMM_ROWS(5)
        SDFLOW_QGEMM_ROWS(4) SDFLOW_QGEMM_ROWS(3) SDFLOW_QGEMM_ROWS(2)
        default: micro<1, PANELS>(groups, q, ldq, b, panel_stride, y, ldy, width, rq, sums, b_scale, per_column, bias,
                                  fit);
    }
#undef SDFLOW_QGEMM_ROWS
}

using gemm::threads_available;  // (1 inside a parallel region)

// The calling thread's buffers for A's quantized rows and their scales, kept between calls.
inline uint8_t* scratch_rows(int64_t bytes) {
    static thread_local std::vector<uint8_t> buffer;
    if (int64_t(buffer.size()) < bytes) buffer.resize(bytes);
    return buffer.data();
}

inline RowQuant* scratch_quant(int64_t rows) {
    static thread_local std::vector<RowQuant> buffer;
    if (int64_t(buffer.size()) < rows) buffer.resize(rows);
    return buffer.data();
}

// Y (ldy) = dequant(quant(A) . B) + bias: B packed by pack_b; b_scale one value or one per column (per_column);
// bias n floats or null.
// a_scale / a_zero: A's quantization from calibration (static), or null (found when the product runs).
inline void dynamic_quantize_matmul(int64_t m, int64_t n, int64_t k, const float* a, int64_t lda,
                                    const int8_t* packed, const float* b_scale, bool per_column, const float* bias,
                                    float* y, int64_t ldy, bool per_row, const float* a_scale = nullptr,
                                    const uint8_t* a_zero = nullptr) {
    if (m <= 0 || n <= 0) return;
    const int threads = threads_available();
    const int64_t groups = k4(k), ldq = groups * 4;
    uint8_t* q = scratch_rows(m * ldq);
    RowQuant* rq = scratch_quant(m);
    if (a_scale) {
        const RowQuant fixed{a_scale[0], (int32_t)a_zero[0]};
#pragma omp parallel for schedule(static) if (threads > 1 && m * k > 32768)
        for (int64_t i = 0; i < m; ++i) {
            rq[i] = fixed;
            quantize_row(a + i * lda, k, fixed, q + i * ldq);
        }
    } else if (per_row) {
#pragma omp parallel for schedule(static) if (threads > 1 && m * k > 32768)
        for (int64_t i = 0; i < m; ++i) {
            float low = 0, high = 0;
            min_max(a + i * lda, k, low, high);
            rq[i] = range_quant(low, high);
            quantize_row(a + i * lda, k, rq[i], q + i * ldq);
        }
    } else {
        float low = 0, high = 0;
        for (int64_t i = 0; i < m; ++i) min_max(a + i * lda, k, low, high);
        const RowQuant whole = range_quant(low, high);
#pragma omp parallel for schedule(static) if (threads > 1 && m * k > 32768)
        for (int64_t i = 0; i < m; ++i) {
            rq[i] = whole;
            quantize_row(a + i * lda, k, whole, q + i * ldq);
        }
    }
    const int32_t* sums = column_sums(packed, k, n);
    const bool fit = pairs_fit_int16(packed, k, n);
    const int64_t panel_stride = groups * NR * 4, total = panels(n);
    const int64_t steps = (total + TILE_PANELS - 1) / TILE_PANELS;  // micro-kernel calls cover TILE_PANELS panels
    const int64_t rows_per_block = std::min(m, MC), row_blocks = (m + rows_per_block - 1) / rows_per_block;
    // A few tiles per thread, each at least ~64k multiply-adds.
    int64_t step_groups = std::max<int64_t>(1, (4 * threads + row_blocks - 1) / row_blocks);
    const int64_t min_steps = std::max<int64_t>(1, 65536 / std::max<int64_t>(1, rows_per_block * k * TILE_PANELS * NR));
    step_groups = std::min(step_groups, std::max<int64_t>(1, steps / min_steps));
    const int64_t steps_per_tile = (steps + step_groups - 1) / step_groups;
    const int64_t tiles = row_blocks * ((steps + steps_per_tile - 1) / steps_per_tile);
#pragma omp parallel for schedule(dynamic, 1) if (threads > 1 && tiles > 1)
    for (int64_t index = 0; index < tiles; ++index) {
        const int64_t rb = index % row_blocks, sg = index / row_blocks;
        const int64_t i0 = rb * rows_per_block, i1 = std::min(m, i0 + rows_per_block);
        const int64_t p0 = sg * steps_per_tile * TILE_PANELS, p1 = std::min(total, p0 + steps_per_tile * TILE_PANELS);
        for (int64_t panel = p0; panel < p1; panel += TILE_PANELS) {
            const int64_t j0 = panel * NR, width = std::min(TILE_PANELS * NR, n - j0);
            const int8_t* b = packed + panel * panel_stride;
            const float* bs = per_column ? b_scale + j0 : b_scale;
            const float* bias_j = bias ? bias + j0 : nullptr;
            for (int64_t i = i0; i < i1; i += TILE_ROWS) {
                const int64_t rows = std::min(TILE_ROWS, i1 - i);
                if (TILE_PANELS == 1 || panel + 1 < total)
                    micro_rows<TILE_PANELS>(rows, groups, q + i * ldq, ldq, b, panel_stride, y + i * ldy + j0, ldy,
                                            width, rq + i, sums + j0, bs, per_column, bias_j, fit);
                else
                    micro_rows<1>(rows, groups, q + i * ldq, ldq, b, panel_stride, y + i * ldy + j0, ldy, width,
                                  rq + i, sums + j0, bs, per_column, bias_j, fit);
            }
        }
    }
}

}  // namespace qgemm
}  // namespace sdflow_kernels
