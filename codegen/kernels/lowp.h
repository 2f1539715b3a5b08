// Element types of 8 bits and fewer (ONNX FLOAT8E4M3FN/E4M3FNUZ/E5M2/E5M2FNUZ/E8M0, FLOAT4E2M1, INT4/UINT4,
// INT2/UINT2): one byte per element (the bits in the low end, as numpy's ml_dtypes holds them), converted to and
// from wider types by the functions below. sdflow stores these types but computes only in wider ones: the lowering
// of Cast/CastLike/QuantizeLinear/DequantizeLinear calls encode/decode, data-movement ops copy the bytes.
//
// Semantics are ONNX's Cast (opset 19-25): round to nearest even; `saturate` clamps to the largest finite value
// (float8 only); without it, overflow is inf (E5M2) or NaN (E4M3FN, both FNUZ). FNUZ types have no -0 (NaN is
// 0x80). FLOAT4E2M1 has neither inf nor NaN. E8M0 follows onnx.numpy_helper.to_float8e8m0 (round_mode up, down,
// nearest). A float cast to a 4- or 2-bit integer truncates toward zero and is 0 out of range (ONNX leaves it
// undefined; numpy's ml_dtypes gives 0); an integer cast keeps the low bits (two's complement, as ONNX says).
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>

namespace sdflow {
namespace lowp {

enum class NaN { none, all_ones, ieee, negative_zero };

// A minifloat: E exponent bits, M mantissa bits, an exponent bias, how NaN is spelled, and whether it has inf.
template <int E_, int M_, int Bias_, NaN Nan_, bool Inf_>
struct Minifloat {
    static constexpr int E = E_, M = M_, bias = Bias_;
    static constexpr NaN nan = Nan_;
    static constexpr bool has_inf = Inf_;
    static constexpr uint32_t sign_bit = 1u << (E + M);
    static constexpr uint32_t exp_ones = (1u << E) - 1, mant_ones = (1u << M) - 1;
    // The largest finite magnitude's bits.
    static constexpr uint32_t max_bits = has_inf ? (((exp_ones - 1) << M) | mant_ones)
                                       : nan == NaN::all_ones ? ((exp_ones << M) | (mant_ones - 1))
                                                              : ((exp_ones << M) | mant_ones);
};

using f8e4m3fn = Minifloat<4, 3, 7, NaN::all_ones, false>;
using f8e4m3fnuz = Minifloat<4, 3, 8, NaN::negative_zero, false>;
using f8e5m2 = Minifloat<5, 2, 15, NaN::ieee, true>;
using f8e5m2fnuz = Minifloat<5, 2, 16, NaN::negative_zero, false>;
using f4e2m1 = Minifloat<2, 1, 1, NaN::none, false>;

// Exponent only (the shared scale of MX formats): 2^(bits - 127), 0xFF is NaN.
struct f8e8m0 {};

// Two's complement (signed) or plain binary integers of B bits.
template <int B, bool Signed>
struct SmallInt {
    static constexpr int bits = B;
    static constexpr bool is_signed = Signed;
    static constexpr int64_t min = Signed ? -(int64_t(1) << (B - 1)) : 0;
    static constexpr int64_t max = Signed ? (int64_t(1) << (B - 1)) - 1 : (int64_t(1) << B) - 1;
    static constexpr uint32_t mask = (1u << B) - 1;
};

using i4 = SmallInt<4, true>;
using u4 = SmallInt<4, false>;
using i2 = SmallInt<2, true>;
using u2 = SmallInt<2, false>;

template <class F> struct is_minifloat : std::false_type {};
template <int E, int M, int B, NaN N, bool I> struct is_minifloat<Minifloat<E, M, B, N, I>> : std::true_type {};
template <class F> struct is_small_int : std::false_type {};
template <int B, bool S> struct is_small_int<SmallInt<B, S>> : std::true_type {};

enum class Round { up = 0, down = 1, nearest = 2 };

// ---- decoding (exact: every value of these types is a float) ----------------------------------------------------

template <class F>
inline float decode(uint8_t code) {
    if constexpr (std::is_same_v<F, f8e8m0>) {
        if (code == 0xFF) return NAN;
        return std::ldexp(1.0f, int(code) - 127);
    } else if constexpr (is_small_int<F>::value) {
        int32_t v = code & F::mask;
        if (F::is_signed && (v >> (F::bits - 1))) v -= int32_t(1) << F::bits;
        return float(v);
    } else {
        static_assert(is_minifloat<F>::value, "not a low-precision type");
        const uint32_t bits = code & ((F::sign_bit << 1) - 1);
        const bool negative = bits & F::sign_bit;
        const uint32_t exponent = (bits >> F::M) & F::exp_ones, mantissa = bits & F::mant_ones;
        if constexpr (F::nan == NaN::negative_zero) {
            if (bits == F::sign_bit) return NAN;
        }
        if constexpr (F::nan == NaN::all_ones) {
            if (exponent == F::exp_ones && mantissa == F::mant_ones) return negative ? -NAN : NAN;
        }
        if constexpr (F::nan == NaN::ieee) {
            if (exponent == F::exp_ones) {
                if (mantissa) return negative ? -NAN : NAN;
                return negative ? -INFINITY : INFINITY;
            }
        }
        const float magnitude = exponent == 0 ? std::ldexp(float(mantissa), 1 - F::bias - F::M)
                                              : std::ldexp(float(mantissa | (1u << F::M)), int(exponent) - F::bias - F::M);
        return negative ? -magnitude : magnitude;
    }
}

// ---- encoding -----------------------------------------------------------------------------------------------

template <class F>
inline uint8_t minifloat_nan(bool negative) {
    if constexpr (F::nan == NaN::negative_zero) return uint8_t(F::sign_bit);
    else if constexpr (F::nan == NaN::all_ones) return uint8_t((negative ? F::sign_bit : 0) | (F::exp_ones << F::M) | F::mant_ones);
    else if constexpr (F::nan == NaN::ieee) return uint8_t((negative ? F::sign_bit : 0) | (F::exp_ones << F::M) | (1u << (F::M - 1)));
    else return uint8_t(F::sign_bit);  // FLOAT4E2M1 has no NaN: -0, as numpy's ml_dtypes gives
}

// A value beyond the largest finite one (or infinite), without saturation.
template <class F>
inline uint8_t minifloat_overflow(bool negative) {
    const uint32_t sign = negative ? F::sign_bit : 0;
    if constexpr (F::has_inf) return uint8_t(sign | (F::exp_ones << F::M));
    else if constexpr (F::nan == NaN::none) return uint8_t(sign | F::max_bits);  // FLOAT4E2M1 saturates
    else return minifloat_nan<F>(negative);
}

// The sign bit, read from the bits: generated code is built with -fno-signed-zeros, under which the compiler may
// take -0.0 for 0.0 in arithmetic (std::signbit included).
template <class T>
inline bool negative_bit(T x) {
    if constexpr (sizeof(T) == 8) {
        uint64_t bits;
        std::memcpy(&bits, &x, sizeof bits);
        return bits >> 63;
    } else {
        uint32_t bits;
        std::memcpy(&bits, &x, sizeof bits);
        return bits >> 31;
    }
}

template <class F>
inline uint8_t encode_minifloat(double x, bool saturate, bool negative) {
    const uint32_t sign = negative ? F::sign_bit : 0;
    if (std::isnan(x)) return minifloat_nan<F>(negative);
    const double a = std::fabs(x);
    const double max_value = double(decode<F>(uint8_t(F::max_bits)));
    if (std::isinf(a)) return saturate ? uint8_t(sign | F::max_bits) : minifloat_overflow<F>(negative);
    const int min_exponent = 1 - F::bias;  // of normal numbers
    int e = 0;
    std::frexp(a, &e);  // a = f * 2^e, f in [0.5, 1)
    const int exponent = a == 0.0 ? min_exponent : (e - 1 < min_exponent ? min_exponent : e - 1);
    const double quantum = std::ldexp(1.0, exponent - F::M);
    const double n = std::nearbyint(a / quantum);  // ties to even (the default rounding mode)
    const double v = n * quantum;
    if (v > max_value) return saturate ? uint8_t(sign | F::max_bits) : minifloat_overflow<F>(negative);
    if (v == 0.0) return F::nan == NaN::negative_zero ? 0 : uint8_t(sign);
    int ev = 0;
    std::frexp(v, &ev);
    const int biased = ev - 1 + F::bias;
    uint32_t bits;
    if (biased <= 0) {
        bits = uint32_t(v / std::ldexp(1.0, min_exponent - F::M));  // subnormal: the mantissa alone
    } else {
        const uint32_t mantissa = uint32_t(std::ldexp(v, F::M - (ev - 1))) & F::mant_ones;
        bits = (uint32_t(biased) << F::M) | mantissa;
    }
    return uint8_t(sign | bits);
}

// As onnx.numpy_helper.to_float8e8m0: from the float32 bits of x (negative values are undefined in ONNX).
inline uint8_t encode_e8m0(float x, bool saturate, Round round) {
    uint32_t bits;
    std::memcpy(&bits, &x, sizeof bits);
    uint32_t exponent = (bits >> 23) & 0xFF;
    if (exponent == 0xFF) return 0xFF;
    bool up = false;
    if (round == Round::nearest) {
        const bool g = bits & 0x400000, r = bits & 0x200000, s = bits & 0x1FFFFF, lsb = exponent > 0;
        up = g && (r || s || lsb);
    } else if (round == Round::up) {
        up = (bits & 0x7FFFFF) != 0;
    }
    if (up && !(saturate && exponent == 0xFE)) exponent += 1;
    return uint8_t(exponent & 0xFF);
}

template <class F>
inline uint8_t encode_small_int(int64_t v) {
    return uint8_t(uint64_t(v) & F::mask);  // the low bits: ONNX's rule for integers out of range
}

template <class F>
inline uint8_t encode_small_int(double x) {
    if (std::isnan(x)) return 0;
    const double t = std::trunc(x);
    if (t < double(F::min) || t > double(F::max)) return 0;
    return encode_small_int<F>(int64_t(t));
}

// encode<F>(value, saturate[, round]): `value` of any arithmetic C++ type (or a type that converts to float,
// as DaCe's float16/bfloat16 do).
template <class F, class T>
inline uint8_t encode(T value, bool saturate = true, Round round = Round::up) {
    if constexpr (is_small_int<F>::value) {
        if constexpr (std::is_integral_v<T>) return encode_small_int<F>(int64_t(value));
        else return encode_small_int<F>(double(float(value)));
    } else if constexpr (std::is_same_v<F, f8e8m0>) {
        return encode_e8m0(float(value), saturate, round);
    } else if constexpr (std::is_integral_v<T>) {
        return encode_minifloat<F>(double(value), saturate, value < 0);
    } else if constexpr (std::is_floating_point_v<T>) {
        return encode_minifloat<F>(double(value), saturate, negative_bit(value));
    } else {
        return encode_minifloat<F>(double(float(value)), saturate, negative_bit(float(value)));
    }
}

}  // namespace lowp
}  // namespace sdflow
