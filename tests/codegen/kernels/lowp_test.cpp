// Unit test of codegen/kernels/lowp.h: for every minifloat, each finite code survives decode -> encode, the
// midpoint between two neighbours rounds to the even one, and the special values follow ONNX Cast's tables; E8M0's
// three rounding modes and the small integers' truncation and wrapping. Prints "ok" on success.
#include <cmath>
#include <cstdio>
#include <cstdlib>

#include "check.h"
#include "lowp.h"

using namespace sdflow::lowp;


template <class F>
static void check_minifloat(const char* name, uint8_t one_bits, float max_value) {
    const int codes = 1 << (F::E + F::M + 1);
    CHECK(encode<F>(1.0f) == one_bits);
    CHECK(decode<F>(one_bits) == 1.0f);
    CHECK(decode<F>(uint8_t(F::max_bits)) == max_value);
    for (int c = 0; c < codes; ++c) {
        const float v = decode<F>(uint8_t(c));
        if (std::isnan(v) || std::isinf(v)) continue;
        const uint8_t back = encode<F>(v, false);
        if (back != uint8_t(c)) {
            std::printf("%s: code %d -> %g -> %d\n", name, c, v, back);
            ++failures;
        }
    }
    // Neighbours among the positive finite values (codes 0 .. max_bits are increasing).
    for (uint32_t c = 0; c < F::max_bits; ++c) {
        const double low = decode<F>(uint8_t(c)), high = decode<F>(uint8_t(c + 1));
        const double mid = (low + high) / 2;
        const uint8_t even = (c % 2 == 0) ? uint8_t(c) : uint8_t(c + 1);
        if (encode<F>(mid) != even) {
            std::printf("%s: midpoint %g of codes %u and %u -> %d\n", name, mid, c, c + 1, encode<F>(mid));
            ++failures;
        }
        CHECK(encode<F>(mid + (high - low) / 8) == uint8_t(c + 1));
        CHECK(encode<F>(mid - (high - low) / 8) == uint8_t(c));
    }
    // ONNX Cast: saturate maps inf and overflow to the largest finite value, keeping the sign.
    CHECK(encode<F>(INFINITY, true) == F::max_bits);
    CHECK(encode<F>(-INFINITY, true) == (F::sign_bit | F::max_bits));
    CHECK(encode<F>(double(max_value) * 4, true) == F::max_bits);
    CHECK(std::isnan(decode<F>(encode<F>(NAN))) || F::nan == NaN::none);
}

int main() {
    check_minifloat<f8e4m3fn>("e4m3fn", 0x38, 448.0f);
    check_minifloat<f8e4m3fnuz>("e4m3fnuz", 0x40, 240.0f);
    check_minifloat<f8e5m2>("e5m2", 0x3C, 57344.0f);
    check_minifloat<f8e5m2fnuz>("e5m2fnuz", 0x40, 57344.0f);
    check_minifloat<f4e2m1>("e2m1", 0x2, 6.0f);

    // Without saturation: E5M2 overflows to inf, E4M3FN to NaN with the sign, the FNUZ types to their one NaN.
    CHECK(encode<f8e5m2>(INFINITY, false) == 0x7C && encode<f8e5m2>(-1e6, false) == 0xFC);
    CHECK(encode<f8e4m3fn>(-INFINITY, false) == 0xFF && encode<f8e4m3fn>(1e6, false) == 0x7F);
    CHECK(encode<f8e4m3fnuz>(INFINITY, false) == 0x80 && encode<f8e5m2fnuz>(-1e9, false) == 0x80);
    // 464 lies halfway between 448 and 480 (not a value of E4M3FN): it rounds to even, to 448.
    CHECK(encode<f8e4m3fn>(464.0f, false) == 0x7E && encode<f8e4m3fn>(470.0f, false) == 0x7F);
    // Signed zero (the FNUZ types have none), and subnormals.
    CHECK(encode<f8e4m3fn>(-0.0f) == 0x80 && encode<f8e4m3fnuz>(-0.0f) == 0x00 && encode<f8e5m2fnuz>(-0.0f) == 0);
    CHECK(decode<f8e4m3fn>(0x01) == std::ldexp(1.0f, -9) && decode<f8e5m2>(0x01) == std::ldexp(1.0f, -16));
    CHECK(encode<f8e4m3fn>(std::ldexp(1.0f, -11)) == 0x00);  // below half the smallest subnormal: zero
    CHECK(std::isnan(decode<f8e4m3fnuz>(0x80)) && decode<f8e5m2>(0x7C) == INFINITY);
    CHECK(encode<f4e2m1>(1e9) == 0x7 && encode<f4e2m1>(-INFINITY, false) == 0xF && encode<f4e2m1>(0.25f) == 0x0);

    // E8M0: powers of two; 3 rounds up to 4, down to 2, to nearest (ties up) 4; 0xFF is NaN.
    CHECK(encode<f8e8m0>(1.0f) == 127 && decode<f8e8m0>(127) == 1.0f && decode<f8e8m0>(130) == 8.0f);
    CHECK(encode<f8e8m0>(3.0f, true, Round::up) == 129 && encode<f8e8m0>(3.0f, true, Round::down) == 128);
    CHECK(encode<f8e8m0>(3.0f, true, Round::nearest) == 129 && encode<f8e8m0>(2.9f, true, Round::nearest) == 128);
    CHECK(encode<f8e8m0>(NAN) == 0xFF && std::isnan(decode<f8e8m0>(0xFF)));
    CHECK(encode<f8e8m0>(3e38f, true, Round::up) == 254 && encode<f8e8m0>(3e38f, false, Round::up) == 255);

    // Small integers: floats truncate toward zero (0 out of range), integers keep their low bits.
    CHECK(decode<i4>(0xD) == -3.0f && decode<u4>(0xD) == 13.0f && decode<i2>(0x2) == -2.0f && decode<u2>(0x3) == 3.0f);
    CHECK(encode<i4>(-3.7f) == 0xD && encode<i4>(7.9f) == 0x7 && encode<i4>(8.0f) == 0 && encode<i4>(-9.0f) == 0);
    CHECK(encode<u4>(15.5f) == 0xF && encode<u4>(-0.5f) == 0 && encode<u4>(16.0f) == 0 && encode<i4>(NAN) == 0);
    CHECK(encode<i4>(int64_t(200)) == 0x8 && encode<u2>(int64_t(-1)) == 0x3 && encode<i2>(int32_t(1)) == 0x1);
    for (int v = -8; v < 8; ++v) CHECK(decode<i4>(encode<i4>(int64_t(v))) == float(v));

    if (failures) return EXIT_FAILURE;
    std::printf("ok\n");
    return 0;
}
