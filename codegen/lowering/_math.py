"""C++ math the compiler can vectorise: glibc's expf/erff are scalar calls inside otherwise vector loops (gcc
only uses its vector variants under -ffast-math). Each is a lambda a tasklet declares and calls in
``#pragma omp simd`` loops; accuracy within a few float32 ulps (Cephes' polynomials)."""
from __future__ import annotations

import re

__all__ = ["EXP_FLOAT", "ERF_FLOAT", "vectorizable"]

# exp(x) for float: x = n ln2 + r, e^r by a degree-6 polynomial, 2^n through the exponent bits. Inputs below
# -87.3 (including -inf) give 0 and above 88.72 infinity, as expf's result under/overflows there; NaN stays NaN.
EXP_FLOAT = """
auto exp_f_ = [](float x_) -> float {
    const float c_ = x_ < -87.3f ? -87.3f : (x_ > 88.3f ? 88.3f : x_);
    const float n_ = std::floor(c_ * 1.44269504088896341f + 0.5f);
    const float r_ = c_ - n_ * 0.693359375f + n_ * 2.12194440e-4f;
    float p_ = 1.9875691500e-4f;
    p_ = p_ * r_ + 1.3981999507e-3f;
    p_ = p_ * r_ + 8.3334519073e-3f;
    p_ = p_ * r_ + 4.1665795894e-2f;
    p_ = p_ * r_ + 1.6666665459e-1f;
    p_ = p_ * r_ + 5.0000001201e-1f;
    p_ = p_ * r_ * r_ + r_ + 1.0f;
    const int32_t bits_ = ((int32_t)n_ + 127) << 23;
    float two_n_;
    std::memcpy(&two_n_, &bits_, sizeof(float));
    const float e_ = x_ < -87.3f ? 0.0f : p_ * two_n_;
    return x_ > 88.72283f ? INFINITY : (x_ != x_ ? x_ : e_);
};
"""

# erf(x) for float: |x| < 1 as x * P(x^2), 1 <= |x| < 4 as 1 - exp(-x^2) Q(1/|x|), beyond that +-1. Least-squares
# fits against math.erf: relative error <= 2e-7 below 1, absolute <= 8e-8 above (float32 rounding level).
ERF_FLOAT = """
auto erf_f_ = [&](float x_) -> float {
    const float a_ = std::fabs(x_), z_ = x_ * x_;
    float p_ = 8.006874122656882e-05f;
    p_ = p_ * z_ - 0.0008053751080296934f;
    p_ = p_ * z_ + 0.005192957818508148f;
    p_ = p_ * z_ - 0.0268560703843832f;
    p_ = p_ * z_ + 0.11283634603023529f;
    p_ = p_ * z_ - 0.3761262893676758f;
    p_ = p_ * z_ + 1.128379225730896f;
    const float t_ = 1.0f / (a_ < 1.0f ? 1.0f : a_);
    float q_ = -0.01802954077720642f;
    q_ = q_ * t_ + 0.1217239499092102f;
    q_ = q_ * t_ - 0.35653194785118103f;
    q_ = q_ * t_ + 0.5783978700637817f;
    q_ = q_ * t_ - 0.5075477361679077f;
    q_ = q_ * t_ + 0.05157844349741936f;
    q_ = q_ * t_ + 0.5576348304748535f;
    q_ = q_ * t_ + 0.0003577829629648477f;
    const float tail_ = a_ >= 4.0f ? 1.0f : 1.0f - exp_f_(-z_) * q_;
    const float r_ = a_ < 1.0f ? x_ * p_ : (x_ < 0.0f ? -tail_ : tail_);
    return x_ != x_ ? x_ : r_;
};
"""


def vectorizable(code: str, ctype: str) -> str:
    """``code`` with float std::exp / std::erf calls replaced by the inline versions above (declared in front), so
    the loop around it vectorises; other types are left alone."""
    if ctype != "float" or not re.search(r"std::(exp|erf)\(", code):
        return code
    uses_erf = "std::erf(" in code
    code = code.replace("std::exp(", "exp_f_(").replace("std::erf(", "erf_f_(")
    return EXP_FLOAT + (ERF_FLOAT if uses_erf else "") + code
