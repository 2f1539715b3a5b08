"""Which convolutions run the direct kernels of codegen/kernels/conv_direct.h (float32, one group, 1-D or 2-D;
AVX-512), and their weights packed once at lowering.

Like ONNX Runtime's kernels, which pre-pack constant initialisers when a session is created, lowering re-lays a
Conv's constant weight once (``prepack``) for the form ``kernel_kind`` picks, passed to the program as an extra
weight (``weight_value`` recomputes it when a cached build is loaded without lowering):
- 'packed' (``conv_direct``): blocks of 8 output channels, [M / 8][C * KH * KW][8], ``<weight>__packed8``; a
  register tile of 8 output channels x 48 positions walks the taps;
- 'channels' (``conv_direct_channels``; output rows of at most 14, at least 2048 taps, or 1x1 convolutions over
  planes of at most 8 positions): blocks of 16,
  [M / 16][C * KH * KW][16], ``<weight>__channels16``; vectors over output channels;
- 'winograd' (``conv_winograd``; 3x3, stride 1, no dilation, outputs of at least 8x8): G g G^T as
  [16][M / 8][C][8], ``<weight>__winograd8``; 16 multiplications per 2x2 outputs instead of 36.
Where im2col + BLAS measured faster (strided 1x1, strided with few taps, 1x1 projections between few channels;
docs/kernels.md) ``uses_direct`` keeps it."""
from __future__ import annotations

import re

import dace
import numpy as np

from sdflow.ir.ops.nn import is_pointwise, window_geometry
from ..options import KernelOptions
from ..threads import has_avx512

DEFAULTS = KernelOptions()

__all__ = ["uses_direct", "uses_winograd", "kernel_kind", "pack", "winograd_pack", "channels_pack", "packed_name",
           "weight_value", "prepack", "PACKED_CONNECTOR"]

BLOCK = 8  # output channels per packed block: the kernel's register tile (conv_direct.h is written for 8)
PACKED_CONNECTOR = "packed_weight"  # the op node's input that ``prepack`` adds
_PACKED = re.compile(r"(.+)__(packed|winograd|channels)(?:8|16)")


def uses_direct(node, x_shape, w_shape, dtype, options: KernelOptions = DEFAULTS) -> bool:
    """Whether this Conv runs the direct kernel; it keeps its other kernels for other types, groups, 3-D, weights
    computed at run time (no shape), CPUs without AVX-512 (the kernel is written for its 32 vector registers),
    the option ``direct_conv=false``, and shapes where those measured faster."""
    if not options.direct_conv:
        return False
    kernel = node.attr("kernel_shape") or list(w_shape[2:])
    if dtype != np.float32 or node.attr("group", 1) != 1 or len(kernel) not in (1, 2) or \
            len(x_shape) != len(kernel) + 2 or not all(isinstance(d, (int, np.integer)) for d in w_shape):
        return False
    if not has_avx512():
        return False
    geo = window_geometry(node, list(x_shape[2:]), kernel)
    # Strided 1x1 convolutions (ResNet's downsampling) read one phase plane of the SH x SW the kernel would
    # build: BLAS's strided im2col is cheaper there. So is it for strided convolutions with few taps per output
    # (MobileNetV2's 3x3 stride-2 stem over RGB, 27 taps: 0.57 ms direct, 0.25 ms BLAS), where copying the
    # image into phase planes costs as much as the arithmetic.
    strided = any(s != 1 for s in geo.strides)
    if strided and (all(k == 1 for k in kernel) or int(np.prod(w_shape[1:])) < 64):
        return False
    # 1x1 convolutions to few channels from a few more than FEW_TAPS (MobileNetV2's 96->24 projection over 56x56)
    # measured no faster direct than with BLAS; from at most FEW_TAPS (its 32->16 over 112x112: 0.154 -> 0.131 ms)
    # the direct kernel's few-taps order is faster.
    return not (all(k == 1 for k in kernel) and int(w_shape[0]) <= 24 and FEW_TAPS < int(w_shape[1]) <= 96)


def uses_winograd(node, x_shape, w_shape, dtype, options: KernelOptions = DEFAULTS) -> bool:
    """Whether a Conv that ``uses_direct`` (the caller, ``kernel_kind``, checked) runs as Winograd F(2x2, 3x3)
    instead: 3x3, stride 1, no dilation, on images of at least 8 x 8 (ResNet's 3x3 convolutions but the strided
    ones). 16 multiplications per 2x2 outputs instead of 36; the option ``winograd=false`` keeps the direct
    kernel."""
    if not options.winograd:
        return False
    kernel = node.attr("kernel_shape") or list(w_shape[2:])
    size = [_known(d) for d in x_shape[2:]]
    if list(kernel) != [3, 3] or None in size:
        return False
    geo = window_geometry(node, size, kernel)
    return all(s == 1 for s in geo.strides) and all(d == 1 for d in geo.dilations) and min(geo.out) >= 8


def kernel_kind(node, x_shape, w_shape, dtype, implementation: str = "",
                options: KernelOptions = DEFAULTS) -> str | None:
    """Which form of the direct kernel a Conv runs, None for none: 'winograd' (``uses_winograd``), 'channels'
    (vectors over output channels, for output rows of at most 14 and at least 2048 taps: a vector of positions
    fills 49 of 64 lanes on a 7x7 image; with fewer taps its per-tile stores cost more than that) or 'packed'
    (vectors over positions). Measured against each other (benchmarks/conv_layers.py): ResNet-18's 512-channel 7x7
    layers 1.79 -> 1.44 ms, its 14x14 stride-2 one 0.95 -> 0.79 ms; 1x1 layers of 96-960 taps on 7x7 and 14x14
    equal or (96 taps) 3.5x slower. ``implementation``: the op node's, where ``select.select_kernels`` chose the
    form already (its first ``+`` part names it)."""
    chosen = implementation.split("+")[0]
    if chosen in IMPLEMENTATION_KINDS:
        return IMPLEMENTATION_KINDS[chosen]
    if not uses_direct(node, x_shape, w_shape, dtype, options):
        return None
    if uses_winograd(node, x_shape, w_shape, dtype, options):
        return "winograd"
    kernel = node.attr("kernel_shape") or list(w_shape[2:])
    size = [_known(d) for d in x_shape[2:]]
    if None not in size and options.channel_vectors:
        geo = window_geometry(node, size, kernel)
        if geo.out[-1] <= CHANNEL_ROWS and int(np.prod(w_shape[1:])) >= CHANNEL_TAPS:
            return "channels"
        # 1x1 convolutions of planes of at most CHANNEL_PLANE positions (the kernel runs each plane as one row):
        # a vector of positions fills at most 8 of 48 lanes there (MNASNet's 2x2 planes: 96 -> 576 channels
        # 0.020 -> 0.009 ms; 4x4 planes are faster with vectors of positions; benchmarks/kernels/conv_direct_bench.cpp).
        if is_pointwise(node, kernel) and int(np.prod(geo.out)) <= CHANNEL_PLANE:
            return "channels"
    return "packed"


# Implementation names (an op node's ``implementation``, set by select.select_kernels) -> kernel_kind's forms.
IMPLEMENTATION_KINDS = {"winograd": "winograd", "direct-channels": "channels", "direct": "packed", "im2col": None}
FEW_TAPS = 64  # 1x1 convolutions from at most this many taps: the direct kernel beats BLAS (see uses_direct)
CHANNEL_ROWS, CHANNEL_TAPS = 14, 2048  # the channel-vector form: output rows up to 14 wide, at least 2048 taps
CHANNEL_PLANE = 8  # ... or 1x1 convolutions over planes of at most 8 positions


def _known(dim) -> int | None:
    """A dimension's value, None for a symbol."""
    try:
        return int(dim)
    except TypeError:
        return None


def packed_name(weight: str, kind: str = "packed") -> str:
    return f"{weight}__{kind}{16 if kind == 'channels' else BLOCK}"


def _aligned(array: np.ndarray) -> np.ndarray:
    """A 64-byte aligned float32 copy (the kernels' vector loads)."""
    storage = np.empty(array.size + 16, np.float32)
    offset = (-storage.ctypes.data % 64) // 4
    aligned = storage[offset:offset + array.size].reshape(array.shape)
    aligned[...] = array
    return aligned


def _blocks(weight: np.ndarray, block: int) -> np.ndarray:
    """[M, C, *kernel] -> [ceil(M / block), C * prod(kernel), block] (output channels past M are zeros), 64-byte
    aligned (the kernels' vector loads)."""
    m = weight.shape[0]
    k = int(np.prod(weight.shape[1:]))
    blocks = -(-m // block)
    flat = np.zeros((blocks * block, k), np.float32)
    flat[:m] = weight.reshape(m, k)
    return _aligned(flat.reshape(blocks, block, k).transpose(0, 2, 1))


def pack(weight: np.ndarray) -> np.ndarray:
    """The direct kernel's weights: blocks of 8 output channels, [ceil(M / 8), C * prod(kernel), 8]."""
    return _blocks(weight, BLOCK)


def channels_pack(weight: np.ndarray) -> np.ndarray:
    """The channel-vector form's weights: blocks of 16 output channels, [ceil(M / 16), C * prod(kernel), 16]."""
    return _blocks(weight, 16)


# Winograd F(2x2, 3x3): Y = A^T [(G g G^T) * (B^T d B)] A for each 2x2 output tile, d its 4x4 input patch.
_G = np.array([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]], np.float64)


def winograd_pack(weight: np.ndarray) -> np.ndarray:
    """[M, C, 3, 3] -> the transformed weights G g G^T as [16][ceil(M / 8)][C][8] (element (u, v) of the 4x4
    transform is index u * 4 + v; output channels past M are zeros), 64-byte aligned."""
    m, c = weight.shape[:2]
    u = np.einsum("ik,mckl,jl->ijmc", _G, weight.astype(np.float64), _G).reshape(16, m, c)
    blocks = -(-m // BLOCK)
    flat = np.zeros((16, blocks * BLOCK, c), np.float32)
    flat[:, :m] = u
    return _aligned(flat.reshape(16, blocks, BLOCK, c).transpose(0, 1, 3, 2))


def weight_value(constant, name: str) -> np.ndarray:
    """The array passed as weight ``name``: the graph constant itself, or the packed form of one
    (``constant(name)`` looks up a graph constant)."""
    match = _PACKED.fullmatch(name)
    try:
        return np.asarray(constant(name), order="C")
    except KeyError:
        if match is None:
            raise
    return _PACKERS[match[2]](np.asarray(constant(match[1]), np.float32))


_PACKERS = {"packed": pack, "winograd": winograd_pack, "channels": channels_pack}


def prepack(graph, weights: dict) -> int:
    """Gives every Conv (and fused convolution) that the direct kernel serves its packed weights, laid out for the
    form ``kernel_kind`` picks: a new weight ``<W>__packed8``, ``<W>__winograd8`` or ``<W>__channels16`` (added to
    ``weights``) on the node's ``packed_weight`` connector. ``weights``: the graph's
    constants, by name (a weight computed at run time keeps im2col + BLAS). Returns how many nodes got one."""
    sdfg, state = graph.sdfg, graph.state
    count = 0
    for node in graph.op_nodes():
        if node.op_type == "Conv" and not node.domain_name:
            conv, positions = node, (0, 1)
        elif node.op_type == "Fused" and node.parsed.kind in ("conv", "conv_depthwise"):
            step = node.parsed.steps[0]
            conv, positions = step.node(), tuple(int(a[2:]) for a in step.args[:2])
        else:
            continue
        inputs = graph.node_inputs(node)
        x, w = (inputs[p] for p in positions)
        if w not in weights or PACKED_CONNECTOR in node.in_connectors:
            continue
        x_desc = sdfg.arrays[x]
        kind = kernel_kind(conv, list(x_desc.shape), list(weights[w].shape), x_desc.dtype.as_numpy_dtype(),
                           node.implementation or "")
        if kind is None:
            continue
        name = packed_name(w, kind)
        if name not in weights:
            weights[name] = _PACKERS[kind](np.asarray(weights[w], np.float32))
            sdfg.add_array(name, weights[name].shape, dace.float32)
        node.add_in_connector(PACKED_CONNECTOR)
        state.add_edge(state.add_read(name), None, node, PACKED_CONNECTOR,
                       dace.Memlet.from_array(name, sdfg.arrays[name]))
        count += 1
    return count
