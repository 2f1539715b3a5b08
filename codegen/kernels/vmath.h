// Float math the compiler can vectorise: glibc's expf/erff are scalar calls inside otherwise vector loops (gcc
// only uses its vector variants under -ffast-math). Always inlined, so a `#pragma omp simd` loop (or the
// auto-vectoriser) sees plain arithmetic. Accuracy within a few float32 ulps (Cephes' polynomials); lowering
// (codegen/lowering/_math.py vectorizable) substitutes them for std::exp / std::erf on float.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

namespace sdflow_kernels {

// exp(x): x = n ln2 + r, e^r by a degree-6 polynomial, 2^n through the exponent bits. Inputs below -87.3
// (including -inf) give 0 and above 88.72 infinity, as expf's result under/overflows there; NaN stays NaN.
__attribute__((always_inline)) inline float exp_f(float x) {
  const float c = x < -87.3f ? -87.3f : (x > 88.3f ? 88.3f : x);
  const float n = std::floor(c * 1.44269504088896341f + 0.5f);
  const float r = c - n * 0.693359375f + n * 2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  const int32_t bits = ((int32_t)n + 127) << 23;
  float two_n;
  std::memcpy(&two_n, &bits, sizeof(float));
  const float e = x < -87.3f ? 0.0f : p * two_n;
  return x > 88.72283f ? INFINITY : (x != x ? x : e);
}

// erf(x): |x| < 1 as x * P(x^2), 1 <= |x| < 4 as 1 - exp(-x^2) Q(1/|x|), beyond that +-1. Least-squares fits
// against math.erf: relative error <= 2e-7 below 1, absolute <= 8e-8 above (float32 rounding level).
__attribute__((always_inline)) inline float erf_f(float x) {
  const float a = std::fabs(x), z = x * x;
  float p = 8.006874122656882e-05f;
  p = p * z - 0.0008053751080296934f;
  p = p * z + 0.005192957818508148f;
  p = p * z - 0.0268560703843832f;
  p = p * z + 0.11283634603023529f;
  p = p * z - 0.3761262893676758f;
  p = p * z + 1.128379225730896f;
  const float t = 1.0f / (a < 1.0f ? 1.0f : a);
  float q = -0.01802954077720642f;
  q = q * t + 0.1217239499092102f;
  q = q * t - 0.35653194785118103f;
  q = q * t + 0.5783978700637817f;
  q = q * t - 0.5075477361679077f;
  q = q * t + 0.05157844349741936f;
  q = q * t + 0.5576348304748535f;
  q = q * t + 0.0003577829629648477f;
  const float tail = a >= 4.0f ? 1.0f : 1.0f - exp_f(-z) * q;
  const float r = a < 1.0f ? x * p : (x < 0.0f ? -tail : tail);
  return x != x ? x : r;
}

}  // namespace sdflow_kernels
