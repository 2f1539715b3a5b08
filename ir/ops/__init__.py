"""sdflow's op set: importing this package registers every op (semantics + node class)."""
from . import (attention, control, einsum, elementwise, fused, linalg, loss, movement, nn, quantization,  # noqa: F401
               recurrent, reduction, remap, sampling)  # (registration side effects)
from ._base import Op, broadcast_shapes, normalize_axis

__all__ = ["Op", "broadcast_shapes", "normalize_axis"]
