"""Tensor types: element types (ONNX <-> numpy <-> DaCe) and symbolic shapes."""
from __future__ import annotations

import dataclasses
import re

import dace
import ml_dtypes
import numpy as np
import onnx
import sympy

__all__ = ["TensorType", "Dim", "numpy_dtype", "onnx_dtype", "dace_dtype", "dtype_name", "dim_str", "make_symbol",
           "to_dim", "is_storage_only", "storage_dtype", "STORAGE_ONLY", "FOUR_BIT_INTEGERS"]

Dim = int | sympy.Expr

# 8-bit and smaller element types (ml_dtypes scalars, one byte per element as numpy holds them): stored as their
# bytes (DaCe uint8 arrays, the semantic type in the array's ``location["element_type"]``) and converted by the
# functions of codegen/kernels/lowp.h. Only conversion and data-movement ops take them (ir.ops.STORAGE_ONLY_OPS).
STORAGE_ONLY = {np.dtype(t) for t in (
    ml_dtypes.float8_e4m3fn, ml_dtypes.float8_e4m3fnuz, ml_dtypes.float8_e5m2, ml_dtypes.float8_e5m2fnuz,
    ml_dtypes.float8_e8m0fnu, ml_dtypes.float4_e2m1fn, ml_dtypes.int4, ml_dtypes.uint4, ml_dtypes.int2,
    ml_dtypes.uint2)}
FOUR_BIT_INTEGERS = (np.dtype(ml_dtypes.uint4), np.dtype(ml_dtypes.int4))  # codes of 4-bit quantized weights
# bfloat16 is a compute type like float16 (DaCe's dace::bfloat16: arithmetic in float, rounded once per op).
_SUPPORTED = [np.float32, np.float64, np.float16, ml_dtypes.bfloat16, np.int8, np.int16, np.int32, np.int64, np.uint8,
              np.uint16, np.uint32, np.uint64, np.bool_] + [t.type for t in STORAGE_ONLY]
_SHORT = {"float32": "f32", "float64": "f64", "float16": "f16", "bfloat16": "bf16", "int8": "i8", "int16": "i16",
          "int32": "i32", "int64": "i64", "uint8": "u8", "uint16": "u16", "uint32": "u32", "uint64": "u64",
          "bool": "bool", "float8_e4m3fn": "f8e4m3fn", "float8_e4m3fnuz": "f8e4m3fnuz", "float8_e5m2": "f8e5m2",
          "float8_e5m2fnuz": "f8e5m2fnuz", "float8_e8m0fnu": "f8e8m0", "float4_e2m1fn": "f4e2m1", "int4": "i4",
          "uint4": "u4", "int2": "i2", "uint2": "u2"}
_BY_NAME = {np.dtype(t).name: np.dtype(t) for t in _SUPPORTED}


def is_storage_only(dtype) -> bool:
    return np.dtype(dtype) in STORAGE_ONLY


def storage_dtype(dtype) -> np.dtype:
    """The numpy dtype that holds ``dtype``'s bytes where only standard numpy types go (DaCe arrays, saved
    weights): the unsigned integer of the same size for ml_dtypes types, ``dtype`` itself otherwise."""
    dtype = np.dtype(dtype)
    if dtype in STORAGE_ONLY or dtype == np.dtype(ml_dtypes.bfloat16):
        return np.dtype(f"uint{8 * dtype.itemsize}")
    return dtype


def element_dtype(name: str) -> np.dtype:
    """The numpy dtype of a supported element type named as numpy names it (``float8_e4m3fn``)."""
    return _BY_NAME[name]


def numpy_dtype(onnx_elem_type: int) -> np.dtype:
    """The numpy dtype of an ONNX TensorProto element type; raises ValueError for unsupported ones."""
    try:
        dtype = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(onnx_elem_type))
    except (KeyError, ValueError, TypeError) as error:
        raise ValueError(f"unsupported ONNX element type {onnx_elem_type}") from error
    if dtype.type not in _SUPPORTED:
        name = onnx.TensorProto.DataType.Name(onnx_elem_type)
        raise ValueError(f"unsupported ONNX element type {name}")
    return dtype


def onnx_dtype(dtype: np.dtype) -> int:
    return onnx.helper.np_dtype_to_tensor_dtype(np.dtype(dtype))


def dace_dtype(dtype: np.dtype) -> dace.typeclass:
    if is_storage_only(dtype):
        return dace.uint8
    return dace.dtypes.typeclass(np.dtype(dtype).type)


def dtype_name(dtype: np.dtype) -> str:
    return _SHORT.get(np.dtype(dtype).name, np.dtype(dtype).name)


def make_symbol(name: str) -> sympy.Symbol:
    """A DaCe symbol (int64, non-negative) whose name is a valid C identifier that neither starts nor ends
    with '_' (generated C++ names its locals with a trailing '_' and its connectors with a leading one)."""
    clean = re.sub(r"\W", "_", name).strip("_")
    if not clean or clean[0].isdigit():
        clean = "d" + clean
    return dace.symbol(clean, dace.int64, nonnegative=True)


_FUNCTIONS = {"floor", "ceiling", "Max", "Min", "Mod"}
# DaCe's integer divisions (a Slice's count clamped to a size known only at run time), as DaCe prints them.
_DACE_FUNCTIONS = {"int_floor": dace.symbolic.int_floor, "int_ceil": dace.symbolic.int_ceil}


def to_dim(value) -> Dim:
    """Normalises a dimension to a Python int when it is a constant, else a sympy expression over the
    canonical (int64, non-negative) DaCe symbols, so that dims from different sources compare equal."""
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, sympy.Basic) and all(isinstance(s, dace.symbolic.symbol) for s in value.free_symbols):
        return int(value) if value.is_Integer else value  # already canonical (the common case)
    if isinstance(value, str):
        # Names like N, S or E are symbols here, not sympy's builtins.
        names = {n: _DACE_FUNCTIONS.get(n) or sympy.Symbol(n) for n in re.findall(r"[A-Za-z_]\w*", value)
                 if n not in _FUNCTIONS}
        expr = sympy.sympify(value, locals=names)
    else:
        expr = sympy.sympify(value)
    if expr.is_Integer:
        return int(expr)
    canonical = {s: make_symbol(s.name) for s in expr.free_symbols}
    return expr.xreplace(canonical)


def dim_str(dim: Dim) -> str:
    return str(dim).replace(" ", "")


@dataclasses.dataclass(frozen=True)
class TensorType:
    """Element type and (possibly symbolic) shape of one tensor."""

    dtype: np.dtype
    shape: tuple[Dim, ...]

    def __post_init__(self):
        object.__setattr__(self, "dtype", np.dtype(self.dtype))
        object.__setattr__(self, "shape", tuple(to_dim(d) for d in self.shape))

    @property
    def rank(self) -> int:
        return len(self.shape)

    @property
    def is_static(self) -> bool:
        return all(isinstance(d, int) for d in self.shape)

    def matches(self, other: "TensorType") -> bool:
        """Same element type and the same shape, symbolic dims compared as expressions (``2*n`` is ``n + n``)."""
        return self.dtype == other.dtype and self.rank == other.rank and all(
            a == b or sympy.simplify(sympy.sympify(a) - sympy.sympify(b)) == 0 for a, b in zip(self.shape, other.shape))

    def __str__(self) -> str:
        return f"{dtype_name(self.dtype)}[{','.join(dim_str(d) for d in self.shape)}]"
