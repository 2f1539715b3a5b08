// Float32 GEMM / GEMV by a weight stored in 4-bit or 8-bit codes: C[m x n] = A[m x k] . W (+ bias), W[p][j] =
// (code[p][j] - zero[p / group][j]) * scale[p / group][j] - DequantizeLinear's blocked form (axis 0, block_size =
// group) - as quantize-weights{bits=8|4|3} writes it and ONNX Runtime's MatMulNBits imports into it.
//
// Fewer than GEMV_ROWS rows run as GEMVs over the codes, summing code x activation per group and applying the
// group's scale and zero point once per group (the same sum regrouped: one conversion and one FMA per weight).
//
// The weight is packed once when the model loads, in gemm.h's panels of 32 columns: per panel, k rows of 16 bytes
// (4 bits: column j's code in the low nibble of byte j / 2 for even j, the high nibble for odd j), 12 bytes (3 bits:
// column j's code at bits 3j..3j+2 of the row read as one little-endian 96-bit number) or 32 bytes (8 bits: one per
// column), then for the panel its scales and zero points as floats, [groups][32] each. A product never holds a float copy of the matrix: each
// thread dequantizes one k slice of one panel (KC x 32 floats, in L1) and runs gemm.h's micro-kernel on it for every
// row block of its tile; (code - zero) * scale is computed as DequantizeLinear defines it (exact integer
// difference, one rounding), so the dequantized values are the reference's bit for bit.
//
// Forms: AVX2 unpacking of the nibbles where the compiler targets AVX2 (AVX-512 machines too), plain loops
// otherwise; the product itself is gemm.h's (AVX-512, AVX2 or plain). The GEMV has an AVX-512 form (two rows of
// codes per step, 16-column vectors), an AVX2 + FMA one and plain loops.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#include "gemm.h"

namespace sdflow_kernels {
namespace nbits {

constexpr int64_t PANEL = gemm::PANEL;  // 32 columns
constexpr int64_t KC = 128;             // k rows dequantized at a time (16 KiB of floats)
constexpr int64_t GEMV_ROWS = 4;        // fewer rows: each one a GEMV over the codes (gemv_panels)

inline int64_t panels(int64_t n) { return (n + PANEL - 1) / PANEL; }
inline int64_t groups(int64_t k, int64_t group) { return (k + group - 1) / group; }

// Bytes of one packed row of a panel, of the codes, and of the whole packed form (the codes of every panel, then
// the scales and zero points, floats, of every panel).
inline int64_t row_bytes(int bits) { return PANEL * bits / 8; }
inline int64_t code_bytes(int64_t k, int64_t n, int bits) { return panels(n) * k * row_bytes(bits); }
inline int64_t packed_bytes(int64_t k, int64_t n, int64_t group, int bits) {
    return code_bytes(k, n, bits) + panels(n) * groups(k, group) * PANEL * 2 * (int64_t)sizeof(float);
}

// Column j's code in one packed row of 3-bit codes.
inline int code3(const uint8_t* row, int64_t j) {
    const int64_t bit = 3 * j;
    const int pair = row[bit / 8] | (bit / 8 + 1 < 12 ? row[bit / 8 + 1] << 8 : 0);
    return (pair >> (bit % 8)) & 7;
}

inline int code_at(const uint8_t* row, int bits, int64_t j) {
    return bits == 8 ? row[j] : bits == 3 ? code3(row, j) : (row[j / 2] >> (4 * (j % 2))) & 15;
}

// The vector forms read 16 bytes of a 12-byte row (the 4 past it are the next row's or the scales': the packed
// weight always continues). Each 32-bit lane gathers the two bytes that hold its code by a byte shuffle within the
// row's copy in every 128-bit lane, then a variable shift and a mask leave the code.
struct Unpack3 {
    alignas(64) int8_t shuffle[2][64];  // for columns 16h..16h+15: lane j's bytes (3 (16h + j)) / 8 and the next
    alignas(64) int32_t shift[2][16];   // (3 (16h + j)) % 8
    constexpr Unpack3() : shuffle{}, shift{} {
        for (int h = 0; h < 2; ++h)
            for (int j = 0; j < 16; ++j) {
                const int bit = 3 * (16 * h + j);
                shuffle[h][4 * j] = (int8_t)(bit / 8), shuffle[h][4 * j + 1] = (int8_t)(bit / 8 + 1);
                shuffle[h][4 * j + 2] = shuffle[h][4 * j + 3] = (int8_t)0x80;  // (zero)
                shift[h][j] = bit % 8;
            }
    }
};
inline const Unpack3& unpack3() {
    static constexpr Unpack3 tables{};  // (constant-initialised: no guard on the hot path)
    return tables;
}

#if defined(__AVX2__)
// The 4- or 8-bit codes of a packed row, one per byte: columns 0-15 into `first`, 16-31 into `second`.
inline void codes_bytes(const uint8_t* row, int bits, __m128i& first, __m128i& second) {
    if (bits == 8) {
        first = _mm_loadu_si128(reinterpret_cast<const __m128i*>(row));
        second = _mm_loadu_si128(reinterpret_cast<const __m128i*>(row + 16));
        return;
    }
    const __m128i bytes = _mm_loadu_si128(reinterpret_cast<const __m128i*>(row));
    const __m128i mask = _mm_set1_epi8(15);
    const __m128i lo = _mm_and_si128(bytes, mask), hi = _mm_and_si128(_mm_srli_epi16(bytes, 4), mask);
    first = _mm_unpacklo_epi8(lo, hi), second = _mm_unpackhi_epi8(lo, hi);
}

// The 3-bit codes of columns 8q..8q+7 of a packed row as int32 lanes.
inline __m256i codes3_avx2(const uint8_t* row, int q) {
    const Unpack3& u = unpack3();
    const __m256i bytes = _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(row)));
    const __m256i pairs = _mm256_shuffle_epi8(
        bytes, _mm256_load_si256(reinterpret_cast<const __m256i*>(u.shuffle[q / 2] + 32 * (q % 2))));
    const __m256i shift = _mm256_load_si256(reinterpret_cast<const __m256i*>(u.shift[q / 2] + 8 * (q % 2)));
    return _mm256_and_si256(_mm256_srlv_epi32(pairs, shift), _mm256_set1_epi32(7));
}
#endif

// Packs codes (k x n, one per byte, values below 2^bits, rows ld apart), scales and zero points (groups x n
// floats, rows n apart; zeros may be null: 0); bits 3, 4 or 8.
inline void pack(const uint8_t* codes, int64_t ld, const float* scales, const float* zeros, int64_t k, int64_t n,
                 int64_t group, int bits, uint8_t* packed) {
    const int64_t g_count = groups(k, group);
    float* params = reinterpret_cast<float*>(packed + code_bytes(k, n, bits));
    for (int64_t panel = 0; panel < panels(n); ++panel) {
        uint8_t* out = packed + panel * k * row_bytes(bits);
        for (int64_t p = 0; p < k && bits == 3; ++p) {
            uint8_t* row = out + p * row_bytes(3);
            std::memset(row, 0, row_bytes(3));
            for (int64_t j = 0; j < PANEL; ++j) {
                const int64_t col = panel * PANEL + j;
                const uint32_t code = col < n ? codes[p * ld + col] & 7 : 0;
                const int64_t bit = 3 * j;
                row[bit / 8] |= (uint8_t)(code << (bit % 8));
                if (bit % 8 > 5) row[bit / 8 + 1] |= (uint8_t)(code >> (8 - bit % 8));
            }
        }
        for (int64_t p = 0; p < k && bits != 3; ++p)
            for (int64_t j = 0; j < PANEL; j += 2) {
                const int64_t col = panel * PANEL + j;
                const uint8_t first = col < n ? codes[p * ld + col] : 0;
                const uint8_t second = col + 1 < n ? codes[p * ld + col + 1] : 0;
                if (bits == 8) {
                    out[p * PANEL + j] = first, out[p * PANEL + j + 1] = second;
                } else {
                    out[p * (PANEL / 2) + j / 2] = (uint8_t)((first & 15) | ((second & 15) << 4));
                }
            }
        float* s = params + panel * g_count * PANEL * 2;
        for (int64_t g = 0; g < g_count; ++g)
            for (int64_t j = 0; j < PANEL; ++j) {
                const int64_t col = panel * PANEL + j;
                s[g * PANEL + j] = col < n ? scales[g * n + col] : 0.0f;
                s[(g_count + g) * PANEL + j] = col < n && zeros ? zeros[g * n + col] : 0.0f;
            }
    }
}

// Rows [k0, k0 + kc) of one panel as floats, out[(p - k0) * 32 + j].
inline void dequantize_slice(const uint8_t* packed, int64_t k, int64_t n, int64_t group, int bits, int64_t panel,
                             int64_t k0, int64_t kc, float* out) {
    const int64_t g_count = groups(k, group);
    const uint8_t* codes = packed + panel * k * row_bytes(bits);
    const float* params =
        reinterpret_cast<const float*>(packed + code_bytes(k, n, bits)) + panel * g_count * PANEL * 2;
    for (int64_t p = k0; p < k0 + kc; ++p) {
        const int64_t g = p / group;
        const float* scale = params + g * PANEL;
        const float* zero = params + (g_count + g) * PANEL;
        const uint8_t* row = codes + p * row_bytes(bits);
        float* w = out + (p - k0) * PANEL;
#if defined(__AVX2__)
        if (bits == 3) {
            for (int q = 0; q < 4; ++q) {
                const __m256 d = _mm256_sub_ps(_mm256_cvtepi32_ps(codes3_avx2(row, q)), _mm256_loadu_ps(zero + 8 * q));
                _mm256_storeu_ps(w + 8 * q, _mm256_mul_ps(d, _mm256_loadu_ps(scale + 8 * q)));
            }
            continue;
        }
        __m128i halves[2];  // the codes of columns 0-15 and 16-31, one per byte
        codes_bytes(row, bits, halves[0], halves[1]);
        for (int h = 0; h < 2; ++h) {
            const __m256 q0 = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(halves[h]));
            const __m256 q1 = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_srli_si128(halves[h], 8)));
            const int64_t j = 16 * h;
            const __m256 d0 = _mm256_sub_ps(q0, _mm256_loadu_ps(zero + j));
            const __m256 d1 = _mm256_sub_ps(q1, _mm256_loadu_ps(zero + j + 8));
            _mm256_storeu_ps(w + j, _mm256_mul_ps(d0, _mm256_loadu_ps(scale + j)));
            _mm256_storeu_ps(w + j + 8, _mm256_mul_ps(d1, _mm256_loadu_ps(scale + j + 8)));
        }
#else
        for (int64_t j = 0; j < PANEL; ++j) {
            w[j] = ((float)code_at(row, bits, j) - zero[j]) * scale[j];
        }
#endif
    }
}

#if defined(__AVX512F__) && defined(__AVX512BW__)
// sum_p a[p] * codes of row p over rows [start, stop) into x0, x1 (decode(p, c0, c1) gives a row's two vectors of
// 16 columns as floats), two rows per step into separate sums: four FMA chains. Returns sum_p a[p].
template <class Decode>
inline float gemv_rows_avx512(const float* a, int64_t start, int64_t stop, Decode decode, __m512& x0, __m512& x1) {
    __m512 t0 = _mm512_setzero_ps(), t1 = t0, u0 = t0, u1 = t0, c0, c1, d0, d1;
    float sum_a = 0.0f;
    int64_t p = start;
    for (; p + 2 <= stop; p += 2) {
        decode(p, c0, c1);
        decode(p + 1, d0, d1);
        const __m512 ap = _mm512_set1_ps(a[p]), aq = _mm512_set1_ps(a[p + 1]);
        t0 = _mm512_fmadd_ps(ap, c0, t0), t1 = _mm512_fmadd_ps(ap, c1, t1);
        u0 = _mm512_fmadd_ps(aq, d0, u0), u1 = _mm512_fmadd_ps(aq, d1, u1);
        sum_a += a[p] + a[p + 1];
    }
    if (p < stop) {
        decode(p, c0, c1);
        const __m512 ap = _mm512_set1_ps(a[p]);
        t0 = _mm512_fmadd_ps(ap, c0, t0), t1 = _mm512_fmadd_ps(ap, c1, t1);
        sum_a += a[p];
    }
    x0 = _mm512_add_ps(t0, u0), x1 = _mm512_add_ps(t1, u1);
    return sum_a;
}
#endif

// One row of A times panels [p0, p1) (a GEMV): per group, t[j] = sum_p a[p] * code[p][j] and sum_a = sum_p a[p],
// then c[j] += scale[g][j] * (t[j] - zero[g][j] * sum_a) - the same sum regrouped, so that each weight costs one
// conversion and one FMA (no dequantized copy: at one row nothing would reuse it).
inline void gemv_panels(int64_t k, int64_t n, const float* a, const uint8_t* packed, int64_t group, int bits,
                        float* c, int64_t p0, int64_t p1, const gemm::Epilogue& e) {
    const int64_t g_count = groups(k, group);
    for (int64_t panel = p0; panel < p1; ++panel) {
        const uint8_t* codes = packed + panel * k * row_bytes(bits);
        const float* params =
            reinterpret_cast<const float*>(packed + code_bytes(k, n, bits)) + panel * g_count * PANEL * 2;
        alignas(32) float acc[PANEL] = {};
        for (int64_t g = 0; g < g_count; ++g) {
            const int64_t start = g * group, stop = std::min(k, start + group);
            alignas(64) float t[PANEL];
            float sum_a = 0.0f;
#if defined(__AVX512F__) && defined(__AVX512BW__)
            // decode(p, c0, c1) gives row p's codes as floats in two vectors of 16 columns.
            // 3 bits: each code's two bytes gathered by a byte shuffle and shifted down index a table of 0..7 twice
            // over (vpermps reads an index's low 4 bits, so the next code's bit falls away, no conversion).
            // 4 bits: a row's 16 bytes widened to 16 int32 lanes, byte i = column 2i | column 2i + 1 << 4; the
            // permute of the table 0..15 turns the lanes into the even columns' codes, and the lanes shifted right
            // by 4 into the odd ones' (one shuffle in place of a widening and a conversion).
            // 8 bits: each 16 bytes widened and converted.
            __m512 x0, x1;
            if (bits == 3) {
                const Unpack3& u = unpack3();
                const __m512 table = _mm512_setr_ps(0, 1, 2, 3, 4, 5, 6, 7, 0, 1, 2, 3, 4, 5, 6, 7);
                const __m512i shuffle0 = _mm512_load_si512(u.shuffle[0]), shuffle1 = _mm512_load_si512(u.shuffle[1]);
                const __m512i shift0 = _mm512_load_si512(u.shift[0]), shift1 = _mm512_load_si512(u.shift[1]);
                sum_a = gemv_rows_avx512(a, start, stop, [&](int64_t p, __m512& c0, __m512& c1) {
                    const __m512i bytes = _mm512_broadcast_i32x4(
                        _mm_loadu_si128(reinterpret_cast<const __m128i*>(codes + p * row_bytes(3))));
                    c0 = _mm512_permutexvar_ps(_mm512_srlv_epi32(_mm512_shuffle_epi8(bytes, shuffle0), shift0), table);
                    c1 = _mm512_permutexvar_ps(_mm512_srlv_epi32(_mm512_shuffle_epi8(bytes, shuffle1), shift1), table);
                }, x0, x1);
            } else if (bits == 8) {
                sum_a = gemv_rows_avx512(a, start, stop, [&](int64_t p, __m512& c0, __m512& c1) {
                    const uint8_t* row = codes + p * PANEL;
                    c0 = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(row))));
                    c1 = _mm512_cvtepi32_ps(
                        _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(row + 16))));
                }, x0, x1);
            } else {
                const __m512 table = _mm512_setr_ps(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
                sum_a = gemv_rows_avx512(a, start, stop, [&](int64_t p, __m512& c0, __m512& c1) {
                    const __m512i lanes = _mm512_cvtepu8_epi32(
                        _mm_loadu_si128(reinterpret_cast<const __m128i*>(codes + p * (PANEL / 2))));
                    c0 = _mm512_permutexvar_ps(lanes, table);
                    c1 = _mm512_permutexvar_ps(_mm512_srli_epi32(lanes, 4), table);
                }, x0, x1);
                // Even and odd columns back in order: t[2i] = even[i], t[2i + 1] = odd[i].
                const __m512i low = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
                const __m512i high = _mm512_setr_epi32(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
                const __m512 even = x0;
                x0 = _mm512_permutex2var_ps(even, low, x1), x1 = _mm512_permutex2var_ps(even, high, x1);
            }
            _mm512_store_ps(t, x0), _mm512_store_ps(t + 16, x1);
#elif defined(__AVX2__) && defined(__FMA__)
            __m256 t0 = _mm256_setzero_ps(), t1 = t0, t2 = t0, t3 = t0;
            for (int64_t p = start; p < stop && bits == 3; ++p) {
                const uint8_t* row = codes + p * row_bytes(3);
                const __m256 ap = _mm256_broadcast_ss(a + p);
                t0 = _mm256_fmadd_ps(ap, _mm256_cvtepi32_ps(codes3_avx2(row, 0)), t0);
                t1 = _mm256_fmadd_ps(ap, _mm256_cvtepi32_ps(codes3_avx2(row, 1)), t1);
                t2 = _mm256_fmadd_ps(ap, _mm256_cvtepi32_ps(codes3_avx2(row, 2)), t2);
                t3 = _mm256_fmadd_ps(ap, _mm256_cvtepi32_ps(codes3_avx2(row, 3)), t3);
                sum_a += a[p];
            }
            for (int64_t p = start; p < stop && bits != 3; ++p) {
                __m128i first, second;  // the codes of columns 0-15 and 16-31
                codes_bytes(codes + p * row_bytes(bits), bits, first, second);
                const __m256 ap = _mm256_broadcast_ss(a + p);
                t0 = _mm256_fmadd_ps(ap, _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(first)), t0);
                t1 = _mm256_fmadd_ps(ap, _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_srli_si128(first, 8))), t1);
                t2 = _mm256_fmadd_ps(ap, _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(second)), t2);
                t3 = _mm256_fmadd_ps(ap, _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_srli_si128(second, 8))), t3);
                sum_a += a[p];
            }
            _mm256_store_ps(t, t0), _mm256_store_ps(t + 8, t1);
            _mm256_store_ps(t + 16, t2), _mm256_store_ps(t + 24, t3);
#else
            for (int64_t j = 0; j < PANEL; ++j) t[j] = 0.0f;
            for (int64_t p = start; p < stop; ++p) {
                const uint8_t* row = codes + p * row_bytes(bits);
                for (int64_t j = 0; j < PANEL; ++j)
                    t[j] += a[p] * (float)code_at(row, bits, j);
                sum_a += a[p];
            }
#endif
            const float* scale = params + g * PANEL;
            const float* zero = params + (g_count + g) * PANEL;
            for (int64_t j = 0; j < PANEL; ++j) acc[j] += scale[j] * (t[j] - zero[j] * sum_a);
        }
        const int64_t j0 = panel * PANEL, width = std::min(PANEL, n - j0);
        for (int64_t j = 0; j < width; ++j) {
            float v = acc[j] * e.alpha + (e.bias ? e.bias[j0 + j] : 0.0f);
            c[j0 + j] = e.accumulate ? c[j0 + j] + v : v;
        }
    }
}

// A per-thread buffer for one dequantized slice, kept between calls.
inline float* slice_buffer() {
    static thread_local std::vector<float> buffer(KC * PANEL);
    return buffer.data();
}

// C (ldc) = A . W (+ e.bias; e.accumulate: C += ...), W packed by pack. Tiles of rows x panels are handed out to
// the threads one at a time (schedule(dynamic)), as gemm.h does.
inline void matmul(int64_t m, int64_t n, int64_t k, const float* a, int64_t lda, const uint8_t* packed,
                   int64_t group, int bits, float* c, int64_t ldc, gemm::Epilogue e = {1.0f, false, nullptr}) {
    if (m <= 0 || n <= 0) return;
    const int threads = gemm::threads_available();
    if (m < GEMV_ROWS) {  // each row on its own, the panels split over the threads
        const int64_t total = panels(n), chunk = std::max<int64_t>(1, total / (4 * threads));
        const int64_t chunks = (total + chunk - 1) / chunk;
        for (int64_t i = 0; i < m; ++i) {
#pragma omp parallel for schedule(dynamic, 1) if (threads > 1 && chunks > 1)
            for (int64_t index = 0; index < chunks; ++index)
                gemv_panels(k, n, a + i * lda, packed, group, bits, c + i * ldc, index * chunk,
                            std::min(total, (index + 1) * chunk), e);
        }
        return;
    }
    const gemm::Tiling t = gemm::tiling(m, n, k, threads);
    const int64_t tiles = t.row_blocks * t.panel_groups, total = panels(n);
#pragma omp parallel for schedule(dynamic, 1) if (threads > 1 && tiles > 1)
    for (int64_t index = 0; index < tiles; ++index) {
        const int64_t rb = index % t.row_blocks, pg = index / t.row_blocks;
        const int64_t i0 = rb * t.rows_per_block, i1 = std::min(m, i0 + t.rows_per_block);
        const int64_t p0 = pg * t.panels_per_group, p1 = std::min(total, p0 + t.panels_per_group);
        float* buffer = slice_buffer();
        for (int64_t panel = p0; panel < p1; ++panel) {
            const int64_t j0 = panel * PANEL, width = std::min(PANEL, n - j0);
            const float* bias = e.bias ? e.bias + j0 : nullptr;
            for (int64_t k0 = 0; k0 < k || k0 == 0; k0 += KC) {
                const int64_t kc = std::min(KC, k - k0);
                const bool first = k0 == 0, last = k0 + KC >= k;
                if (kc > 0) dequantize_slice(packed, k, n, group, bits, panel, k0, kc, buffer);
                for (int64_t i = i0; i < i1; i += gemm::MAX_ROWS)
                    gemm::micro_rows(std::min(gemm::MAX_ROWS, i1 - i), kc, a + i * lda + k0, lda, buffer,
                                     c + i * ldc + j0, ldc, width, first, last, e, bias);
                if (k == 0) break;
            }
        }
    }
}

}  // namespace nbits
}  // namespace sdflow_kernels
