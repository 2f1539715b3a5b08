"""Random inputs for a compiled model (CLI ``run --random``, ``bench``): concrete shapes from symbol sizes."""
from __future__ import annotations

import numpy as np

from sdflow.ir import SdflowError, TensorType

__all__ = ["concrete_shape", "random_input"]


def concrete_shape(name: str, ttype: TensorType, sizes: dict[str, int], hint: str) -> list[int]:
    """The shape of input ``name`` with its symbolic dims taken from ``sizes``; ``hint`` says how to give one."""
    shape = []
    for dim in ttype.shape:
        if isinstance(dim, int):
            shape.append(dim)
        elif str(dim) in sizes:
            shape.append(sizes[str(dim)])
        else:
            raise SdflowError(f"input {name!r} has symbolic dim {dim}; {hint}")
    return shape


def random_input(rng: np.random.Generator, name: str, ttype: TensorType, shape, int_high: int = 2) -> np.ndarray:
    """Normal floats; integers in [0, int_high) (indices stay in range), all ones for attention masks."""
    if np.issubdtype(ttype.dtype, np.integer) or ttype.dtype == np.bool_:
        if "mask" in name:
            return np.ones(shape, ttype.dtype)
        return rng.integers(0, int_high, shape).astype(ttype.dtype)
    return rng.standard_normal(shape).astype(ttype.dtype)
