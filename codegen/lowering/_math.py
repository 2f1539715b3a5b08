"""Float math the compiler can vectorise (codegen/kernels/vmath.h): glibc's expf/erff are scalar calls inside
otherwise vector loops (gcc only uses its vector variants under -ffast-math)."""
from __future__ import annotations

import re

__all__ = ["VMATH_INCLUDE", "vectorizable", "math_includes"]

VMATH_INCLUDE = '#include "vmath.h"\n'


def vectorizable(code: str, ctype: str) -> str:
    """``code`` with float std::exp / std::erf calls replaced by vmath.h's inline versions, so the loop around it
    vectorises; other types are left alone. The tasklet that runs it includes vmath.h (``math_includes``)."""
    if ctype != "float" or not re.search(r"std::(exp|erf)\(", code):
        return code
    return code.replace("std::exp(", "sdflow_kernels::exp_f(").replace("std::erf(", "sdflow_kernels::erf_f(")


def math_includes(code: str) -> str:
    """The include a tasklet's ``code`` needs for vmath.h's functions ('' when it calls none)."""
    return VMATH_INCLUDE if re.search(r"sdflow_kernels::(exp|erf)_f\(", code) else ""
