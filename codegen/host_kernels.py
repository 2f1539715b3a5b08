"""The ops whose output shape depends on input values (NonZero, NonMaxSuppression, Unique, Compress with a run-time
condition), run between compiled parts of a model (sdflow/fallback.py's PartitionedModel): numpy arrays in,
numpy arrays out, computed by the C++ of codegen/kernels/dynamic_ops.{h,cpp}, built once per source and compiler
flags into the sdflow cache as a shared library."""
from __future__ import annotations

import ctypes
import functools
import hashlib
import subprocess

import ml_dtypes
import numpy as np
import onnx

from sdflow.ir import CompileError, InputError

from .cache import KERNELS_DIR, cache_root, cpu_args, cxx_compiler, exclusive_build

__all__ = ["HOST_OPS", "host_op", "library"]

HOST_OPS = ("NonZero", "NonMaxSuppression", "Unique", "Compress")

_TYPE_CODES = {np.dtype(t): code for code, t in enumerate(
    (np.float32, np.float64, np.int8, np.uint8, np.int16, np.uint16, np.int32, np.uint32, np.int64, np.uint64))}
_I64 = ctypes.POINTER(ctypes.c_int64)


@functools.cache
def library() -> ctypes.CDLL:
    """The kernels' shared library, compiled on first use (and after any change of its sources or flags)."""
    sources = [KERNELS_DIR / "dynamic_ops.cpp", KERNELS_DIR / "dynamic_ops.h"]
    compiler = cxx_compiler()
    if compiler is None:
        raise CompileError("no C++ compiler found (CXX, c++ or g++) to build sdflow's dynamic-shape kernels")
    flags = ["-O3", "-std=c++17", "-shared", "-fPIC", *cpu_args().split()]
    digest = hashlib.sha256("\0".join([compiler, *flags]).encode())
    for source in sources:
        digest.update(source.read_bytes())
    folder = cache_root() / "kernels" / f"dynamic_ops-{digest.hexdigest()[:16]}"
    target = folder / "libsdflow_dynamic_ops.so"
    with exclusive_build(folder) as build:
        if build:
            folder.mkdir(parents=True, exist_ok=True)
            done = subprocess.run([compiler, *flags, str(sources[0]), "-o", str(target)], capture_output=True,
                                  text=True)
            if done.returncode != 0:
                raise CompileError(f"building {sources[0].name} failed: {done.stderr.strip()[-2000:]}")
    try:
        lib = ctypes.CDLL(str(target))
    except OSError as error:
        raise CompileError(f"cannot load sdflow's dynamic-shape kernels ({target}): {error}") from None
    p, i64, i32, f32 = ctypes.c_void_p, ctypes.c_int64, ctypes.c_int, ctypes.c_float
    signatures = {
        "sdflow_nonzero_count": [i32, p, i64],
        "sdflow_nonzero_fill": [i32, p, _I64, i32, i64, _I64],
        "sdflow_non_max_suppression": [p, p, i64, i64, i64, i64, f32, i32, f32, i32, _I64],
        "sdflow_compress_count": [p, i64, i64],
        "sdflow_compress_fill": [p, p, i64, i64, i64, i64, i64, p],
        "sdflow_unique": [i32, p, i64, i64, i64, i32, _I64, _I64, _I64],
    }
    for name, argtypes in signatures.items():
        getattr(lib, name).argtypes = argtypes
        getattr(lib, name).restype = i64
    return lib


def _ptr(array: np.ndarray):
    return array.ctypes.data_as(ctypes.c_void_p)


def _i64(array: np.ndarray):
    return array.ctypes.data_as(_I64)


def _comparable(x: np.ndarray) -> np.ndarray:
    """The array the kernels compare: float16 and bfloat16 widened to float32 (exactly, order kept)."""
    return x.astype(np.float32) if x.dtype in (np.float16, np.dtype(ml_dtypes.bfloat16)) else x


def _type_code(x: np.ndarray, what: str) -> int:
    dtype = np.dtype(np.uint8) if x.dtype == np.bool_ else x.dtype
    if dtype not in _TYPE_CODES:
        raise CompileError(f"{what}: {x.dtype} inputs are not supported (float32/64 and integer types)")
    return _TYPE_CODES[dtype]


def _nonzero(node, x):
    x = np.ascontiguousarray(_comparable(x))
    lib, code = library(), _type_code(x, "NonZero")
    flat = x.view(np.uint8) if x.dtype == np.bool_ else x
    count = lib.sdflow_nonzero_count(code, _ptr(flat), x.size)
    shape = np.array(x.shape or (1, ), np.int64)
    out = np.empty((x.ndim, count), np.int64)
    if x.ndim and count:
        lib.sdflow_nonzero_fill(code, _ptr(flat), _i64(shape), x.ndim, count, _i64(out))
    return [out]


def _scalar(value, default, dtype):
    if value is None or np.size(value) == 0:
        return default
    return dtype(np.asarray(value).ravel()[0])


def _non_max_suppression(node, boxes, scores, max_per_class=None, iou=None, score_threshold=None):
    if boxes.ndim != 3 or boxes.shape[2] != 4 or scores.ndim != 3 or scores.shape[0] != boxes.shape[0] \
            or scores.shape[2] != boxes.shape[1]:
        raise InputError(f"NonMaxSuppression: boxes {list(boxes.shape)} and scores {list(scores.shape)} must be "
                         "[batches, boxes, 4] and [batches, classes, boxes]")
    boxes = np.ascontiguousarray(boxes, np.float32)
    scores = np.ascontiguousarray(scores, np.float32)
    batches, classes, num_boxes = scores.shape
    limit = max(0, _scalar(max_per_class, 0, int))
    room = batches * classes * min(num_boxes, limit)
    selected = np.empty((max(room, 1), 3), np.int64)
    count = library().sdflow_non_max_suppression(
        _ptr(boxes), _ptr(scores), batches, classes, num_boxes, limit, _scalar(iou, 0.0, float),
        int(score_threshold is not None and np.size(score_threshold) > 0), _scalar(score_threshold, 0.0, float),
        int(node.attr("center_point_box", 0) or 0), _i64(selected))
    return [selected[:count].copy()]


def _compress(node, x, condition):
    axis = node.attr("axis", None)
    condition = np.ascontiguousarray(condition, np.bool_).ravel()
    x = np.ascontiguousarray(x)
    if axis is None:
        x, axis = x.reshape(-1), 0
    axis = axis + x.ndim if axis < 0 else axis
    if not 0 <= axis < x.ndim:
        raise InputError(f"Compress: axis {node.attr('axis', None)} is out of range for rank {x.ndim}")
    if condition.size > x.shape[axis]:
        raise InputError(f"Compress: the condition has {condition.size} entries, more than the {x.shape[axis]} "
                         f"along axis {axis}")
    outer, inner = int(np.prod(x.shape[:axis])), int(np.prod(x.shape[axis + 1:]))
    lib = library()
    count = lib.sdflow_compress_count(_ptr(condition), condition.size, x.shape[axis])
    out = np.empty(x.shape[:axis] + (count, ) + x.shape[axis + 1:], x.dtype)
    if out.size:
        lib.sdflow_compress_fill(_ptr(x), _ptr(condition), condition.size, outer, x.shape[axis], inner,
                                 x.dtype.itemsize, _ptr(out))
    return [out]


def _unique(node, x):
    axis = node.attr("axis", None)
    x = np.ascontiguousarray(x)
    if axis is None:
        x, axis = x.reshape(-1), 0
    axis = axis + x.ndim if axis < 0 else axis
    values = np.ascontiguousarray(_comparable(x))
    code = _type_code(values, "Unique")
    size = x.shape[axis]
    outer, inner = int(np.prod(x.shape[:axis])), int(np.prod(x.shape[axis + 1:]))
    first, inverse, counts = (np.empty(max(size, 1), np.int64) for _ in range(3))
    flat = values.view(np.uint8) if values.dtype == np.bool_ else values
    groups = library().sdflow_unique(code, _ptr(flat), outer, size, inner, int(node.attr("sorted", 1)),
                                     _i64(first), _i64(inverse), _i64(counts))
    first, counts, inverse = first[:groups].copy(), counts[:groups].copy(), inverse[:size].copy()
    return [np.take(x, first, axis=axis), first, inverse, counts]


_RUNNERS = {"NonZero": _nonzero, "NonMaxSuppression": _non_max_suppression, "Compress": _compress,
            "Unique": _unique}


class _Attributes:
    def __init__(self, proto: onnx.NodeProto):
        self._values = {a.name: onnx.helper.get_attribute_value(a) for a in proto.attribute}

    def attr(self, name, default=None):
        value = self._values.get(name, default)
        return value.decode() if isinstance(value, bytes) else value


def host_op(proto: onnx.NodeProto):
    """A callable running ``proto`` (one of HOST_OPS): numpy inputs by position (None for absent ones), the list
    of its outputs."""
    runner, node = _RUNNERS[proto.op_type], _Attributes(proto)
    return lambda *inputs: runner(node, *inputs)
