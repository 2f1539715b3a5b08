"""Conversions to and from the storage-only element types (float8, float4, int4, int2; ir.types.STORAGE_ONLY):
C++ expressions over codegen/kernels/lowp.h. Arrays of these types are uint8 in DaCe; their element type is the
array's ``location["element_type"]``."""
from __future__ import annotations

import ml_dtypes
import numpy as np

from sdflow.ir.types import element_dtype, is_storage_only

__all__ = ["element_type", "convert_expression", "INCLUDE"]

INCLUDE = '#include "lowp.h"'

_FORMATS = {np.dtype(t): f"sdflow::lowp::{name}" for t, name in (
    (ml_dtypes.float8_e4m3fn, "f8e4m3fn"), (ml_dtypes.float8_e4m3fnuz, "f8e4m3fnuz"),
    (ml_dtypes.float8_e5m2, "f8e5m2"), (ml_dtypes.float8_e5m2fnuz, "f8e5m2fnuz"), (ml_dtypes.float8_e8m0fnu, "f8e8m0"),
    (ml_dtypes.float4_e2m1fn, "f4e2m1"), (ml_dtypes.int4, "i4"), (ml_dtypes.uint4, "u4"), (ml_dtypes.int2, "i2"),
    (ml_dtypes.uint2, "u2"))}
_ROUND = {"up": "up", "down": "down", "nearest": "nearest"}


def element_type(desc) -> np.dtype:
    """The element type an array holds (its DaCe dtype, unless it stores a narrower type's bytes)."""
    name = desc.location.get("element_type")
    return element_dtype(name) if name else desc.dtype.as_numpy_dtype()


def convert_expression(value: str, source: np.dtype, target: np.dtype, target_ctype: str, saturate: bool = True,
                       round_mode: str = "up") -> str:
    """C++ converting ``value`` (of element type ``source``) to ``target``, whose C++ type is ``target_ctype``."""
    if source == target:
        return value
    if is_storage_only(source):
        value = f"sdflow::lowp::decode<{_FORMATS[source]}>({value})"
        if target.kind == "b":
            return f"({value} != 0.0f)"
        if not is_storage_only(target):
            return f"({target_ctype})({value})"
    if is_storage_only(target):
        return (f"sdflow::lowp::encode<{_FORMATS[target]}>({value}, {'true' if saturate else 'false'}, "
                f"sdflow::lowp::Round::{_ROUND[round_mode]})")
    return f"({target_ctype})({value})"
