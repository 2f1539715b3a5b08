// Single-precision GEMM with packed B: C[m x n] (=|+=) alpha * A[m x k] . B[k x n] (+ bias[n]), row-major.
//
// B is packed into panels of PANEL (32) columns, [ceil(n / 32)][k][32], the last panel zero-padded, so that the
// micro-kernel reads 32 consecutive floats per k step. Constant weights are packed once when the model loads
// (codegen/lowering/linalg.py adds the packed copy as a weight); a B computed at run time (attention's K^T and V)
// is packed per call into a thread-local buffer. A is read in place (rows lda apart); each micro-kernel call keeps
// ROWS x 32 accumulators in registers over a KC-long slice of k.
//
// Work is split into tiles of up to MC rows x NC columns, handed out to the OpenMP threads one at a time
// (schedule(dynamic)): a core that another process keeps busy takes fewer tiles instead of stalling the others at
// the end of a static split. Batches of small products (attention heads) are one parallel loop over the items.
//
// Forms: AVX-512 intrinsics where the compiler targets AVX-512F, AVX2 + FMA intrinsics (6 rows x 16 columns)
// where it targets those, otherwise plain loops over a 32-float row that the compiler vectorises for the target it
// has (SSE, NEON).
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#if defined(__AVX512F__) || defined(__AVX2__)
#include <immintrin.h>
#endif
#if defined(_OPENMP)
#include <omp.h>
#endif

namespace sdflow_kernels {
namespace gemm {

constexpr int64_t PANEL = 32;     // columns of a packed panel (two 16-float vectors)
#if defined(__AVX512F__) || !(defined(__AVX2__) && defined(__FMA__))
constexpr int64_t MAX_ROWS = 8;   // rows of one micro-kernel call
#else
constexpr int64_t MAX_ROWS = 6;   // rows of one micro-kernel call (AVX2: 6 x 2 vectors of accumulators)
#endif
constexpr int64_t KC = 384;       // k slice a micro-kernel call accumulates in registers
constexpr int64_t MC = 64;        // rows of a tile (its A block stays in L2 across the tile's panels)

inline int64_t panels(int64_t n) { return (n + PANEL - 1) / PANEL; }

// Floats in the packed form of a k x n matrix.
inline int64_t packed_size(int64_t k, int64_t n) { return panels(n) * k * PANEL; }

// Packs B (k x n, row-major with rows ldb apart; with trans_b, B is given as its n x k transpose, rows ldb apart).
inline void pack_b(const float* b, int64_t ldb, bool trans_b, int64_t k, int64_t n, float* packed) {
    for (int64_t panel = 0; panel < panels(n); ++panel) {
        const int64_t j0 = panel * PANEL, width = std::min(PANEL, n - j0);
        float* out = packed + panel * k * PANEL;
        for (int64_t p = 0; p < k; ++p) {
            float* row = out + p * PANEL;
            if (trans_b) {
                for (int64_t j = 0; j < width; ++j) row[j] = b[(j0 + j) * ldb + p];
            } else {
                std::memcpy(row, b + p * ldb + j0, sizeof(float) * width);
            }
            for (int64_t j = width; j < PANEL; ++j) row[j] = 0.0f;
        }
    }
}

// The epilogue of a tile's last k slice: scale, add what C held (accumulate) and a per-column bias.
struct Epilogue {
    float alpha;
    bool accumulate;     // C += product (else C = product)
    const float* bias;   // n floats, or null
};

#if defined(__AVX512F__)
// ROWS x 32 block of C from a k slice: a points at the block's first row and slice start, b at the packed panel's
// slice start. Every slice's product is scaled by alpha; the first slice of k overwrites C or adds to it (per the
// epilogue), later slices add to it; the last one adds the bias. `width` columns of the 32 are stored.
template <int ROWS>
inline void micro(int64_t kc, const float* a, int64_t lda, const float* b, float* c, int64_t ldc, int64_t width,
                  bool first, bool last, const Epilogue& e, const float* bias) {
    __m512 acc0[ROWS], acc1[ROWS];
    for (int r = 0; r < ROWS; ++r) acc0[r] = acc1[r] = _mm512_setzero_ps();
    for (int64_t p = 0; p < kc; ++p) {
        const __m512 b0 = _mm512_loadu_ps(b + p * PANEL), b1 = _mm512_loadu_ps(b + p * PANEL + 16);
        for (int r = 0; r < ROWS; ++r) {
            const __m512 ar = _mm512_set1_ps(a[r * lda + p]);
            acc0[r] = _mm512_fmadd_ps(ar, b0, acc0[r]);
            acc1[r] = _mm512_fmadd_ps(ar, b1, acc1[r]);
        }
    }
    const __mmask16 m0 = width >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << width) - 1);
    const __mmask16 m1 = width >= 32 ? __mmask16(0xFFFF) : width <= 16 ? __mmask16(0) : __mmask16((1u << (width - 16)) - 1);
    const bool add_c = !first || e.accumulate;
    const __m512 alpha = _mm512_set1_ps(e.alpha);
    __m512 bias0 = _mm512_setzero_ps(), bias1 = _mm512_setzero_ps();
    if (last && bias) bias0 = _mm512_maskz_loadu_ps(m0, bias), bias1 = _mm512_maskz_loadu_ps(m1, bias + 16);
    for (int r = 0; r < ROWS; ++r) {
        __m512 v0 = acc0[r], v1 = acc1[r];
        if (e.alpha != 1.0f) v0 = _mm512_mul_ps(v0, alpha), v1 = _mm512_mul_ps(v1, alpha);
        if (last) v0 = _mm512_add_ps(v0, bias0), v1 = _mm512_add_ps(v1, bias1);
        float* row = c + r * ldc;
        if (add_c) {
            v0 = _mm512_add_ps(v0, _mm512_maskz_loadu_ps(m0, row));
            v1 = _mm512_add_ps(v1, _mm512_maskz_loadu_ps(m1, row + 16));
        }
        _mm512_mask_storeu_ps(row, m0, v0);
        _mm512_mask_storeu_ps(row + 16, m1, v1);
    }
}

// One row of A times S consecutive panels over all of k (a GEMV): S streams of the packed weight read side by side,
// so that a thread keeps several memory streams in flight (one stream per thread left the matrix at ~30 GB/s from
// memory). 2 x S accumulators; the sum over k in order, so a column's value depends on k alone. `width`: columns
// of the S panels that exist.
template <int S>
inline void gemv_panels(int64_t k, const float* a, const float* b, float* c, int64_t width, const Epilogue& e,
                        const float* bias) {
    __m512 acc0[S], acc1[S];
#pragma GCC unroll 8
    for (int s = 0; s < S; ++s) acc0[s] = acc1[s] = _mm512_setzero_ps();
    for (int64_t p = 0; p < k; ++p) {
        const __m512 ap = _mm512_set1_ps(a[p]);
#pragma GCC unroll 8
        for (int s = 0; s < S; ++s) {
            const float* bp = b + s * k * PANEL + p * PANEL;
            acc0[s] = _mm512_fmadd_ps(ap, _mm512_loadu_ps(bp), acc0[s]);
            acc1[s] = _mm512_fmadd_ps(ap, _mm512_loadu_ps(bp + 16), acc1[s]);
        }
    }
    const __m512 alpha = _mm512_set1_ps(e.alpha);
#pragma GCC unroll 8
    for (int s = 0; s < S; ++s) {
        const int64_t left = width - s * PANEL;
        if (left <= 0) break;
        const __mmask16 m0 = left >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << left) - 1);
        const __mmask16 m1 = left >= 32 ? __mmask16(0xFFFF) : left <= 16 ? __mmask16(0) : __mmask16((1u << (left - 16)) - 1);
        float* out = c + s * PANEL;
        __m512 v0 = acc0[s], v1 = acc1[s];
        if (e.alpha != 1.0f) v0 = _mm512_mul_ps(v0, alpha), v1 = _mm512_mul_ps(v1, alpha);
        if (bias) {
            v0 = _mm512_add_ps(v0, _mm512_maskz_loadu_ps(m0, bias + s * PANEL));
            v1 = _mm512_add_ps(v1, _mm512_maskz_loadu_ps(m1, bias + s * PANEL + 16));
        }
        if (e.accumulate) {
            v0 = _mm512_add_ps(v0, _mm512_maskz_loadu_ps(m0, out));
            v1 = _mm512_add_ps(v1, _mm512_maskz_loadu_ps(m1, out + 16));
        }
        _mm512_mask_storeu_ps(out, m0, v0);
        _mm512_mask_storeu_ps(out + 16, m1, v1);
    }
}
constexpr int64_t GEMV_PANELS = 4;  // panels (streams) of one GEMV task
#define SDFLOW_GEMM_HAS_GEMV 1
#elif defined(__AVX2__) && defined(__FMA__)
// ROWS x 16 columns (half a panel) over a k slice into sums (rows PANEL apart): 2 x ROWS accumulators, 2 loads of
// B and ROWS broadcasts of A per k step (ROWS <= 6: 12 accumulators + 2 + 1 of AVX2's 16 registers, so that B
// is loaded once per step, not once per row as a memory operand of each FMA).
template <int ROWS>
inline void half_panel(int64_t kc, const float* a, int64_t lda, const float* b, float* sums) {
    __m256 acc0[ROWS], acc1[ROWS];
#pragma GCC unroll 8
    for (int r = 0; r < ROWS; ++r) acc0[r] = acc1[r] = _mm256_setzero_ps();
    for (int64_t p = 0; p < kc; ++p) {
        const __m256 b0 = _mm256_loadu_ps(b + p * PANEL), b1 = _mm256_loadu_ps(b + p * PANEL + 8);
#pragma GCC unroll 8
        for (int r = 0; r < ROWS; ++r) {
            const __m256 ar = _mm256_broadcast_ss(a + r * lda + p);
            acc0[r] = _mm256_fmadd_ps(ar, b0, acc0[r]);
            acc1[r] = _mm256_fmadd_ps(ar, b1, acc1[r]);
        }
    }
    // (constant indices once the loop is unrolled: gcc 12 keeps the accumulators in registers only so)
#pragma GCC unroll 8
    for (int r = 0; r < ROWS; ++r) {
        _mm256_store_ps(sums + r * PANEL, acc0[r]);
        _mm256_store_ps(sums + r * PANEL + 8, acc1[r]);
    }
}

// One or two rows x 32 columns (a GEMV's row): with two rows or fewer, half panels would leave the FMAs waiting
// on each other's results; here 8 independent accumulators (4 vectors of columns x 2 rows, or x even and odd k).
template <int ROWS>
inline void thin_panel(int64_t kc, const float* a, int64_t lda, const float* b, float* sums) {
    __m256 x0 = _mm256_setzero_ps(), x1 = x0, x2 = x0, x3 = x0, y0 = x0, y1 = x0, y2 = x0, y3 = x0;
    const float* a1 = a + (ROWS == 2 ? lda : 1);  // the second row, or the next k of the one row
    const int64_t step = ROWS == 2 ? 1 : 2;
    int64_t p = 0;
    for (; p + step <= kc; p += step) {
        const float* bp = b + p * PANEL;
        const float* bq = ROWS == 2 ? bp : bp + PANEL;
        const __m256 s0 = _mm256_broadcast_ss(a + p), s1 = _mm256_broadcast_ss(a1 + p);
        x0 = _mm256_fmadd_ps(s0, _mm256_loadu_ps(bp), x0);
        x1 = _mm256_fmadd_ps(s0, _mm256_loadu_ps(bp + 8), x1);
        x2 = _mm256_fmadd_ps(s0, _mm256_loadu_ps(bp + 16), x2);
        x3 = _mm256_fmadd_ps(s0, _mm256_loadu_ps(bp + 24), x3);
        y0 = _mm256_fmadd_ps(s1, _mm256_loadu_ps(bq), y0);
        y1 = _mm256_fmadd_ps(s1, _mm256_loadu_ps(bq + 8), y1);
        y2 = _mm256_fmadd_ps(s1, _mm256_loadu_ps(bq + 16), y2);
        y3 = _mm256_fmadd_ps(s1, _mm256_loadu_ps(bq + 24), y3);
    }
    if (ROWS == 1 && p < kc) {  // an odd k: the last step
        const __m256 s0 = _mm256_broadcast_ss(a + p);
        const float* bp = b + p * PANEL;
        x0 = _mm256_fmadd_ps(s0, _mm256_loadu_ps(bp), x0);
        x1 = _mm256_fmadd_ps(s0, _mm256_loadu_ps(bp + 8), x1);
        x2 = _mm256_fmadd_ps(s0, _mm256_loadu_ps(bp + 16), x2);
        x3 = _mm256_fmadd_ps(s0, _mm256_loadu_ps(bp + 24), x3);
    }
    if (ROWS == 1) {  // even + odd k (the sum's order is fixed by k alone: the same for every thread count)
        x0 = _mm256_add_ps(x0, y0), x1 = _mm256_add_ps(x1, y1), x2 = _mm256_add_ps(x2, y2), x3 = _mm256_add_ps(x3, y3);
    } else {
        _mm256_store_ps(sums + PANEL, y0), _mm256_store_ps(sums + PANEL + 8, y1);
        _mm256_store_ps(sums + PANEL + 16, y2), _mm256_store_ps(sums + PANEL + 24, y3);
    }
    _mm256_store_ps(sums, x0), _mm256_store_ps(sums + 8, x1), _mm256_store_ps(sums + 16, x2);
    _mm256_store_ps(sums + 24, x3);
}

// ROWS x 32 block of C (ROWS <= MAX_ROWS = 6), the same contract as the AVX-512 form: two half panels.
template <int ROWS>
inline void micro(int64_t kc, const float* a, int64_t lda, const float* b, float* c, int64_t ldc, int64_t width,
                  bool first, bool last, const Epilogue& e, const float* bias) {
    alignas(32) float sums[ROWS][PANEL];
    if (ROWS <= 2) {
        thin_panel<ROWS>(kc, a, lda, b, sums[0]);
    } else {
        half_panel<ROWS>(kc, a, lda, b, sums[0]);
        if (width > 16) half_panel<ROWS>(kc, a, lda, b + 16, sums[0] + 16);
    }
    const bool add_c = !first || e.accumulate;
    const __m256 alpha = _mm256_set1_ps(e.alpha);
    const __m256i lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    for (int q = 0; q < 4; ++q) {
        const int64_t left = width - 8 * q;
        if (left <= 0) break;
        const __m256i mask = _mm256_cmpgt_epi32(_mm256_set1_epi32((int)std::min<int64_t>(left, 8)), lanes);
        const __m256 bq = last && bias ? _mm256_maskload_ps(bias + 8 * q, mask) : _mm256_setzero_ps();
        for (int r = 0; r < ROWS; ++r) {
            __m256 v = _mm256_load_ps(sums[r] + 8 * q);
            if (e.alpha != 1.0f) v = _mm256_mul_ps(v, alpha);
            if (last) v = _mm256_add_ps(v, bq);
            float* out = c + r * ldc + 8 * q;
            if (add_c) v = _mm256_add_ps(v, _mm256_maskload_ps(out, mask));
            _mm256_maskstore_ps(out, mask, v);
        }
    }
}
#else
template <int ROWS>
inline void micro(int64_t kc, const float* a, int64_t lda, const float* b, float* c, int64_t ldc, int64_t width,
                  bool first, bool last, const Epilogue& e, const float* bias) {
    float acc[ROWS][PANEL] = {};
    for (int64_t p = 0; p < kc; ++p) {
        const float* bp = b + p * PANEL;
        for (int r = 0; r < ROWS; ++r) {
            const float ar = a[r * lda + p];
            for (int j = 0; j < PANEL; ++j) acc[r][j] += ar * bp[j];
        }
    }
    const bool add_c = !first || e.accumulate;
    for (int r = 0; r < ROWS; ++r) {
        float* row = c + r * ldc;
        for (int64_t j = 0; j < width; ++j) {
            float v = acc[r][j] * e.alpha;
            if (last && bias) v += bias[j];
            row[j] = add_c ? row[j] + v : v;
        }
    }
}
#endif

// rows (1..MAX_ROWS) x one panel, through the micro-kernel of that height.
inline void micro_rows(int64_t rows, int64_t kc, const float* a, int64_t lda, const float* b, float* c, int64_t ldc,
                       int64_t width, bool first, bool last, const Epilogue& e, const float* bias) {
    switch (rows) {
        case 8: micro<8>(kc, a, lda, b, c, ldc, width, first, last, e, bias); break;
        case 7: micro<7>(kc, a, lda, b, c, ldc, width, first, last, e, bias); break;
        case 6: micro<6>(kc, a, lda, b, c, ldc, width, first, last, e, bias); break;
        case 5: micro<5>(kc, a, lda, b, c, ldc, width, first, last, e, bias); break;
        case 4: micro<4>(kc, a, lda, b, c, ldc, width, first, last, e, bias); break;
        case 3: micro<3>(kc, a, lda, b, c, ldc, width, first, last, e, bias); break;
        case 2: micro<2>(kc, a, lda, b, c, ldc, width, first, last, e, bias); break;
        default: micro<1>(kc, a, lda, b, c, ldc, width, first, last, e, bias); break;
    }
}

// One tile: rows [i0, i1) x panels [p0, p1) of C, over all of k, in one thread.
inline void tile(int64_t i0, int64_t i1, int64_t p0, int64_t p1, int64_t n, int64_t k, const float* a, int64_t lda,
                 const float* packed, float* c, int64_t ldc, const Epilogue& e) {
    for (int64_t k0 = 0; k0 < k || k0 == 0; k0 += KC) {
        const int64_t kc = std::min(KC, k - k0);
        const bool first = k0 == 0, last = k0 + KC >= k;
        for (int64_t panel = p0; panel < p1; ++panel) {
            const int64_t j0 = panel * PANEL, width = std::min(PANEL, n - j0);
            const float* b = packed + panel * k * PANEL + k0 * PANEL;
            const float* bias = e.bias ? e.bias + j0 : nullptr;
            for (int64_t i = i0; i < i1; i += MAX_ROWS) {
                micro_rows(std::min(MAX_ROWS, i1 - i), kc, a + i * lda + k0, lda, b, c + i * ldc + j0, ldc, width,
                           first, last, e, bias);
            }
        }
        if (k == 0) break;
    }
}

inline int threads_available() {
#if defined(_OPENMP)
    return omp_in_parallel() ? 1 : omp_get_max_threads();
#else
    return 1;
#endif
}

// Tiles of a product: rows in blocks of up to MC, panels in groups sized so that there are a few tiles per thread.
struct Tiling {
    int64_t row_blocks, rows_per_block, panel_groups, panels_per_group;
};

inline Tiling tiling(int64_t m, int64_t n, int64_t k, int threads) {
    Tiling t;
    t.rows_per_block = std::min(m, MC);
    t.row_blocks = (m + t.rows_per_block - 1) / std::max<int64_t>(t.rows_per_block, 1);
    const int64_t total_panels = panels(n);
    // Aim for 4 tiles per thread (room for a dynamic schedule to even out a busy core), each at least ~64k flops.
    int64_t groups = std::max<int64_t>(1, (4 * threads + t.row_blocks - 1) / std::max<int64_t>(t.row_blocks, 1));
    const int64_t min_panels = std::max<int64_t>(1, 65536 / std::max<int64_t>(1, 2 * t.rows_per_block * k * PANEL));
    groups = std::min(groups, std::max<int64_t>(1, total_panels / min_panels));
    t.panels_per_group = (total_panels + groups - 1) / groups;
    t.panel_groups = (total_panels + t.panels_per_group - 1) / std::max<int64_t>(t.panels_per_group, 1);
    return t;
}

// C = alpha * A . B (+ bias) (accumulate: C += ...), B packed by pack_b. Parallel over tiles when called outside a
// parallel region.
inline void gemm_packed(int64_t m, int64_t n, int64_t k, const float* a, int64_t lda, const float* packed, float* c,
                        int64_t ldc, Epilogue e = {1.0f, false, nullptr}) {
    if (m <= 0 || n <= 0) return;
    const int threads = threads_available();
#if defined(SDFLOW_GEMM_HAS_GEMV)
    if (m == 1 && k > 0) {  // a GEMV: tasks of GEMV_PANELS panels, whole k each
        const int64_t total = panels(n), tasks = (total + GEMV_PANELS - 1) / GEMV_PANELS;
#pragma omp parallel for schedule(dynamic, 1) if (threads > 1 && tasks > 1 && k * n >= 65536)
        for (int64_t task = 0; task < tasks; ++task) {
            const int64_t p0 = task * GEMV_PANELS, j0 = p0 * PANEL, count = std::min(GEMV_PANELS, total - p0);
            const float* b = packed + p0 * k * PANEL;
            const float* bias = e.bias ? e.bias + j0 : nullptr;
            if (count == GEMV_PANELS) gemv_panels<GEMV_PANELS>(k, a, b, c + j0, n - j0, e, bias);
            else
                for (int64_t q = 0; q < count; ++q)
                    gemv_panels<1>(k, a, b + q * k * PANEL, c + j0 + q * PANEL, n - j0 - q * PANEL, e,
                                   bias ? bias + q * PANEL : nullptr);
        }
        return;
    }
#endif
    const Tiling t = tiling(m, n, k, threads);
    const int64_t tiles = t.row_blocks * t.panel_groups;
    const int64_t total_panels = panels(n);
#pragma omp parallel for schedule(dynamic, 1) if (threads > 1 && tiles > 1)
    for (int64_t index = 0; index < tiles; ++index) {
        const int64_t rb = index % t.row_blocks, pg = index / t.row_blocks;
        const int64_t i0 = rb * t.rows_per_block, i1 = std::min(m, i0 + t.rows_per_block);
        const int64_t p0 = pg * t.panels_per_group, p1 = std::min(total_panels, p0 + t.panels_per_group);
        tile(i0, i1, p0, p1, n, k, a, lda, packed, c, ldc, e);
    }
}

// A per-thread buffer for packing a B computed at run time, kept between calls: a fresh allocation of a few MB
// per call would be fresh pages, each faulted in and zeroed by the kernel (about twice the GEMM's own time).
inline float* scratch(int64_t floats) {
    static thread_local std::vector<float> buffer;
    if (int64_t(buffer.size()) < floats) buffer.resize(floats);
    return buffer.data();
}

// One product in one thread (the items of a batch).
inline void gemm_serial(int64_t m, int64_t n, int64_t k, const float* a, int64_t lda, const float* b, int64_t ldb,
                        bool trans_b, float* c, int64_t ldc, Epilogue e) {
    if (m <= 0 || n <= 0) return;
    float* packed = scratch(packed_size(k, n));
    pack_b(b, ldb, trans_b, k, n, packed);
    tile(0, m, 0, panels(n), n, k, a, lda, packed, c, ldc, e);
}

// C = alpha * A . B with B in row-major (or transposed) form: packed into a buffer first.
inline void gemm(int64_t m, int64_t n, int64_t k, const float* a, int64_t lda, const float* b, int64_t ldb,
                 bool trans_b, float* c, int64_t ldc, Epilogue e = {1.0f, false, nullptr}) {
    if (m <= 0 || n <= 0) return;
    if (threads_available() == 1) return gemm_serial(m, n, k, a, lda, b, ldb, trans_b, c, ldc, e);
    float* packed = scratch(packed_size(k, n));  // (this thread's: the team below only reads it)
    const int64_t total_panels = panels(n);
#pragma omp parallel for schedule(static)
    for (int64_t panel = 0; panel < total_panels; ++panel) {
        const int64_t j0 = panel * PANEL;
        pack_b(trans_b ? b + j0 * ldb : b + j0, ldb, trans_b, k, std::min(PANEL, n - j0), packed + panel * k * PANEL);
    }
    gemm_packed(m, n, k, a, lda, packed, c, ldc, e);
}

// `batch` products of the same shape; offsets(t, a_offset, b_offset, c_offset) gives item t's operands (in floats
// from a, b and c). Items run in parallel, each in one thread, when there are enough of them; otherwise one
// after the other, each split into tiles.
template <typename Offsets>
inline void gemm_batched(int64_t batch, int64_t m, int64_t n, int64_t k, const float* a, int64_t lda, const float* b,
                         int64_t ldb, bool trans_b, float* c, int64_t ldc, Offsets offsets,
                         Epilogue e = {1.0f, false, nullptr}) {
    const int threads = threads_available();
    if (batch >= 2 * threads || threads == 1) {
#pragma omp parallel for schedule(dynamic, 1) if (threads > 1)
        for (int64_t t = 0; t < batch; ++t) {
            int64_t ao = 0, bo = 0, co = 0;
            offsets(t, ao, bo, co);
            gemm_serial(m, n, k, a + ao, lda, b + bo, ldb, trans_b, c + co, ldc, e);
        }
        return;
    }
    for (int64_t t = 0; t < batch; ++t) {
        int64_t ao = 0, bo = 0, co = 0;
        offsets(t, ao, bo, co);
        gemm(m, n, k, a + ao, lda, b + bo, ldb, trans_b, c + co, ldc, e);
    }
}

// C = alpha A B + beta C in plain loops, for element types with no BLAS and no packed kernel (integers, float16,
// bfloat16), accumulating in Acc (float for the 16-bit floats, as numpy does). A is m x k (lda; trans_a: given as
// its k x m transpose), B k x n (ldb; trans_b: its n x k transpose). With beta 0, C is not read (a buffer that
// held NaN or inf before must not leak into 0 * C).
template <class T, class Acc>
void gemm_loops(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, Acc alpha, const T* a, int64_t lda,
                const T* b, int64_t ldb, Acc beta, T* c, int64_t ldc) {
    for (int64_t i = 0; i < m; ++i)
        for (int64_t j = 0; j < n; ++j) {
            Acc acc = 0;
            for (int64_t p = 0; p < k; ++p)
                acc += (Acc)(trans_a ? a[p * lda + i] : a[i * lda + p]) * (Acc)(trans_b ? b[j * ldb + p] : b[p * ldb + j]);
            T& out = c[i * ldc + j];
            out = beta == (Acc)0 ? (T)(alpha * acc) : (T)(alpha * acc + beta * (Acc)out);
        }
}

// y [m][n] = beta * C, C broadcast from [c_rows][c_cols] (each 1 or the full size): Gemm's C term, before the
// product is added.
template <class T>
void fill_scaled(T* y, int64_t m, int64_t n, const T* c, int64_t c_rows, int64_t c_cols, T beta) {
    for (int64_t i = 0; i < m; ++i)
        for (int64_t j = 0; j < n; ++j) y[i * n + j] = beta * c[(c_rows == 1 ? 0 : i) * c_cols + (c_cols == 1 ? 0 : j)];
}

}  // namespace gemm
}  // namespace sdflow_kernels
