"""Weights re-laid once, when a model is lowered, for the kernels that read them: convolution weights for the
direct kernels (``conv_direct.prepack``), GEMM weights in the panels of ``codegen/kernels/gemm.h``
(``prepack_gemm``), int8 weights in the panels of ``codegen/kernels/qgemm.h`` (``prepack_qgemm``) and 4-bit
weights in the panels of ``codegen/kernels/nbits.h`` (``prepack_nbits``). A packed weight is an extra program
argument named after its source constant (``<W>__packed8``, ``<W>__gemm32n_768``, ...), so that ``weight_value``
can compute it again from the constant when a cached build is loaded without lowering."""
from __future__ import annotations

import re

import dace
import numpy as np

from sdflow.ir.types import TensorType
from . import conv_direct
from .fused import matmul_blocks
from .linalg import PACKED as GEMM_PACKED  # the op node's input that ``prepack_gemm`` adds
from .quantization import NBITS_PACKED, QGEMM_PACKED  # the op node's inputs that the prepack_* steps add

__all__ = ["prepack", "weight_value", "pack_gemm", "gemm_packed_name", "packed_offsets", "gemm_candidate",
           "GEMM_PACKED", "PANEL"]

PANEL = 32  # gemm.h's PANEL
_GEMM_NAME = re.compile(r"(.+)__gemm32([nt])((?:_\d+)+)")
_QGEMM_NAME = re.compile(r"(.+)__qgemm8((?:_\d+)+)")
_NBITS_NAME = re.compile(r"(.+)__nbits_codes__packed([348])_g(\d+)((?:_\d+)+)")
QGEMM_PANEL = 16  # qgemm.h's NR


def gemm_packed_name(weight: str, transposed: bool, widths) -> str:
    return f"{weight}__gemm32{'t' if transposed else 'n'}" + "".join(f"_{int(w)}" for w in widths)


def pack_gemm(weight: np.ndarray, transposed: bool, widths) -> np.ndarray:
    """B (k x n; ``transposed``: given as n x k) as gemm.h's ``pack_b`` lays it out, one packed block per column
    block of ``widths`` (a fused MatMul + Split writes each block to its own output), blocks one after another:
    [ceil(w / 32)][k][32] each, columns past w zero."""
    b = np.asarray(weight, np.float32)
    b = b.T if transposed else b
    parts, low = [], 0
    for width in widths:
        block = np.pad(b[:, low:low + width], ((0, 0), (0, (-width) % PANEL)))
        parts.append(block.reshape(b.shape[0], -1, PANEL).transpose(1, 0, 2).ravel())
        low += width
    return np.ascontiguousarray(np.concatenate(parts), dtype=np.float32)


def packed_offsets(k: int, widths) -> list[int]:
    """Where each column block starts in ``pack_gemm``'s array (floats)."""
    offsets, at = [], 0
    for width in widths:
        offsets.append(at)
        at += -(-int(width) // PANEL) * int(k) * PANEL
    return offsets


def _concrete(dims) -> bool:
    return all(isinstance(d, (int, np.integer)) or getattr(d, "is_Integer", False) for d in dims)


def gemm_candidate(graph, node) -> tuple[int, bool, list[int]] | None:
    """(input position of B, whether B is given transposed, column block widths) of a float32 product whose B the
    packed kernel can take: MatMul and Gemm (transA = 0) with a 2-D B, and fused MatMul epilogues."""
    sdfg = graph.sdfg
    names = graph.node_inputs(node)
    if node.op_type == "MatMul" and not node.domain_name:
        position, transposed = 1, False
    elif node.op_type == "Gemm" and not node.domain_name and not node.attr("transA", 0):
        position, transposed = 1, bool(node.attr("transB", 0))
    elif node.op_type == "Fused" and node.parsed.kind == "matmul":
        step = node.parsed.steps[0]
        position, transposed = int(step.args[1][2:]), False
        a_position = int(step.args[0][2:])
        if sdfg.arrays[names[a_position]].dtype != dace.float32:
            return None
        inputs = [TensorType(sdfg.arrays[n].dtype.as_numpy_dtype(), list(sdfg.arrays[n].shape)) if n else None
                  for n in names]
        types = node.parsed.types(inputs)
        if types[step.args[1]].rank != 2 or not _concrete(types[step.args[1]].shape):
            return None
        return position, transposed, [int(w) for _, _, w in matmul_blocks(node.parsed, types)]
    else:
        return None
    if len(names) < 2 or not names[0] or not names[1]:
        return None
    a, b = sdfg.arrays[names[0]], sdfg.arrays[names[position]]
    if a.dtype != dace.float32 or b.dtype != dace.float32 or len(b.shape) != 2 or not _concrete(b.shape):
        return None
    return position, transposed, [int(b.shape[0 if transposed else 1])]


def prepack_gemm(graph, weights: dict) -> int:
    """Gives every float32 product whose B is a constant its packed copy (``pack_gemm``, added to ``weights``) on
    the node's ``packed_gemm`` connector. Returns how many nodes got one."""
    sdfg, state = graph.sdfg, graph.state
    count = 0
    for node in graph.op_nodes():
        if node.implementation in ("blas", "gemm"):  # (select.select_kernels chose another kernel)
            continue
        candidate = gemm_candidate(graph, node)
        if candidate is None or GEMM_PACKED in node.in_connectors:
            continue
        position, transposed, widths = candidate
        w = graph.node_inputs(node)[position]
        if w not in weights or 0 in weights[w].shape:
            continue
        name = gemm_packed_name(w, transposed, widths)
        if name not in weights:
            weights[name] = pack_gemm(weights[w], transposed, widths)
            sdfg.add_array(name, weights[name].shape, dace.float32)
        node.add_in_connector(GEMM_PACKED)
        state.add_edge(state.add_read(name), None, node, GEMM_PACKED, dace.Memlet.from_array(name, sdfg.arrays[name]))
        count += 1
    return count


def pack_qgemm(weight: np.ndarray, widths) -> np.ndarray:
    """An int8 B (k x n) as qgemm.h's ``pack_b`` lays it out, one packed block per column block of ``widths``,
    blocks one after another: [ceil(w / 16)][ceil(k / 4)][16][4] bytes (padding 0), the int32 column sums, and an
    int32 flag (1 when every pair of consecutive k of a column has |b0| + |b1| <= 128)."""
    b = np.asarray(weight, np.int8)
    k = b.shape[0]
    parts, low = [], 0
    for width in widths:
        width = int(width)
        kp, np_ = -(-k // 4) * 4, -(-width // QGEMM_PANEL) * QGEMM_PANEL
        padded = np.zeros((kp, np_), np.int8)
        padded[:k, :width] = b[:, low:low + width]
        panels = padded.reshape(kp // 4, 4, np_ // QGEMM_PANEL, QGEMM_PANEL).transpose(2, 0, 3, 1)
        wide = padded.astype(np.int32)
        fit = bool(np.all(np.abs(wide).reshape(kp // 2, 2, np_).sum(axis=1) <= 128))
        parts += [panels.ravel(), wide.sum(axis=0).astype("<i4").view(np.int8),
                  np.array([int(fit)], "<i4").view(np.int8)]
        low += width
    return np.ascontiguousarray(np.concatenate(parts), dtype=np.int8)


def qgemm_offsets(k: int, widths) -> list[int]:
    """Where each column block starts in ``pack_qgemm``'s array (bytes): qgemm.h's ``packed_bytes`` of each."""
    offsets, at = [], 0
    for width in widths:
        offsets.append(at)
        panels = -(-int(width) // QGEMM_PANEL)
        at += panels * (-(-int(k) // 4)) * QGEMM_PANEL * 4 + panels * QGEMM_PANEL * 4 + 4
    return offsets


def qgemm_candidate(graph, node) -> tuple[int, list[int]] | None:
    """(input position of the int8 B, column block widths) of a QuantizedMatMul, alone or first in a fused
    kernel."""
    names = graph.node_inputs(node)
    if node.op_type == "QuantizedMatMul" and node.domain_name == "ai.sdflow":
        b = graph.sdfg.arrays[names[1]]
        return (1, [int(b.shape[1])]) if _concrete(b.shape) else None
    if node.op_type == "Fused" and node.parsed.kind == "matmul_int8":
        step = node.parsed.steps[0]
        inputs = [graph.tensor_type(n) if n else None for n in names]
        types = node.parsed.types(inputs)
        if not _concrete(types[step.args[1]].shape):
            return None
        return int(step.args[1][2:]), [int(w) for _, _, w in matmul_blocks(node.parsed, types)]
    return None


def prepack_qgemm(graph, weights: dict) -> int:
    """Gives every int8 product whose B is a constant its packed copy (``pack_qgemm``) on the node's
    ``packed_qgemm`` connector. Returns how many nodes got one."""
    sdfg, state = graph.sdfg, graph.state
    count = 0
    for node in graph.op_nodes():
        candidate = qgemm_candidate(graph, node)
        if candidate is None or QGEMM_PACKED in node.in_connectors:
            continue
        position, widths = candidate
        w = graph.node_inputs(node)[position]
        if w not in weights or 0 in weights[w].shape:
            continue
        name = f"{w}__qgemm8" + "".join(f"_{int(width)}" for width in widths)
        if name not in weights:
            weights[name] = pack_qgemm(weights[w], widths)
            sdfg.add_array(name, weights[name].shape, dace.int8)
        node.add_in_connector(QGEMM_PACKED)
        state.add_edge(state.add_read(name), None, node, QGEMM_PACKED, dace.Memlet.from_array(name, sdfg.arrays[name]))
        count += 1
    return count


def nbits_width(code_dtype, dequantize=None) -> int:
    """Bits per code of a fused product's weight: 8 for uint8 codes, 4 for uint4 (fuse-dequantize-matmul makes
    them unsigned), 3 for uint4 codes below 8 (the DequantizeLinear ``dequantize`` says so: ``code_bits``)."""
    if np.dtype(code_dtype) == np.uint8:
        return 8
    return 3 if dequantize is not None and dequantize.attr("code_bits", 0) == 3 else 4


def nbits_group(code_shape, scale_shape, dequantize) -> int:
    """The rows of K that share a scale in nbits.h: the DequantizeLinear's block, or all of K (per column or
    per tensor)."""
    from sdflow.ir.ops.quantization import scale_index_axes
    kind, _, block = scale_index_axes(dequantize, 2, list(scale_shape))
    return int(block) if kind == "blocked" else max(int(code_shape[0]), 1)


def _code_values(value) -> np.ndarray:
    """Codes or zero points as uint8 values: a 4-bit constant may arrive as ml_dtypes uint4 or as its stored bytes
    (one per code; raw ``V1`` after a graph copy), both read as the byte's value."""
    value = np.asarray(value)
    if value.dtype.itemsize == 1 and value.dtype.kind not in "iub":
        return value.view(np.uint8)
    return value.astype(np.uint8)


def _full_rows(value, k: int, n: int, group: int, codes: bool = False) -> np.ndarray:
    """Scales or zero points (``codes``) as [ceil(k / group), n] floats (one value, one per column, or blocked
    already)."""
    rows = -(-k // group)
    value = (_code_values(value) if codes else np.asarray(value)).astype(np.float32)
    if value.ndim == 2:
        return value
    return np.broadcast_to(value.reshape(1, -1), (rows, n)).astype(np.float32)


def pack_nbits(codes, scales, zeros, group: int, widths, bits: int = 4) -> np.ndarray:
    """3-, 4- or 8-bit codes [k, n] and their scales and zero points as nbits.h's ``pack`` lays them out, one packed
    block per column block of ``widths``: [ceil(w / 32)][k][16] bytes (4 bits: column j in the low nibble of byte
    j / 2 for even j, the high one for odd j), [ceil(w / 32)][k][12] (3 bits: column j's code at bits 3j..3j+2 of
    the row, little-endian) or [ceil(w / 32)][k][32] (8 bits), then [ceil(w / 32)][2][groups][32]
    floats (scales, zero points)."""
    q = _code_values(codes)
    k, n = q.shape
    s, z = _full_rows(scales, k, n, group), _full_rows(zeros, k, n, group, codes=True)
    rows = s.shape[0]
    parts, low = [], 0
    for width in widths:
        width = int(width)
        padded = -(-width // PANEL) * PANEL
        c = np.zeros((k, padded), np.uint8)
        c[:, :width] = q[:, low:low + width]
        if bits == 8:
            bytes_ = c.reshape(k, padded // PANEL, PANEL).transpose(1, 0, 2)
        elif bits == 3:  # per row of a panel: column j's code at bits 3j..3j+2 of 12 little-endian bytes
            bits_ = (c.reshape(k, padded // PANEL, PANEL, 1) >> np.arange(3, dtype=np.uint8)) & 1
            bytes_ = np.packbits(bits_.reshape(k, padded // PANEL, 3 * PANEL), axis=2, bitorder="little")
            bytes_ = bytes_.transpose(1, 0, 2)
        else:
            bytes_ = (c[:, 0::2] | (c[:, 1::2] << 4)).reshape(k, padded // PANEL, PANEL // 2).transpose(1, 0, 2)
        params = np.zeros((2, rows, padded), np.float32)
        params[0, :, :width], params[1, :, :width] = s[:, low:low + width], z[:, low:low + width]
        params = params.reshape(2, rows, padded // PANEL, PANEL).transpose(2, 0, 1, 3)
        parts += [bytes_.ravel(), np.ascontiguousarray(params).astype("<f4").view(np.uint8).ravel()]
        low += width
    return np.ascontiguousarray(np.concatenate(parts), dtype=np.uint8)


def nbits_offsets(k: int, widths, group: int, bits: int = 4) -> list[int]:
    """Where each column block starts in ``pack_nbits``'s array (bytes): nbits.h's ``packed_bytes`` of each."""
    offsets, at = [], 0
    rows = -(-int(k) // int(group)) if k else 0
    for width in widths:
        offsets.append(at)
        panels = -(-int(width) // PANEL)
        at += panels * int(k) * (PANEL * bits // 8) + panels * rows * PANEL * 2 * 4
    return offsets


def prepack_nbits(graph, weights: dict) -> int:
    """Gives every fused 4-bit product (fuse-dequantize-matmul) its packed weight ``pack_nbits`` on the node's
    ``packed_nbits`` connector; the codes, scales and zero points are the constants ``<base>__nbits_*``. Returns
    how many nodes got one."""
    sdfg, state = graph.sdfg, graph.state
    count = 0
    for node in graph.op_nodes():
        if node.op_type != "Fused" or node.parsed.kind != "matmul_nbits" or NBITS_PACKED in node.in_connectors:
            continue
        names = graph.node_inputs(node)
        program = node.parsed
        dq = program.steps[0]
        codes, scales, zeros = (names[int(a[2:])] for a in dq.args[:3])
        if not codes.endswith("__nbits_codes") or any(t not in weights for t in (codes, scales, zeros)):
            continue
        types = program.types([graph.tensor_type(t) if t else None for t in names])
        widths = [int(w) for _, _, w in matmul_blocks(program, types)]
        group = nbits_group(weights[codes].shape, weights[scales].shape, dq.node())
        bits = nbits_width(types[dq.args[0]].dtype, dq.node())
        name = f"{codes}__packed{bits}_g{group}" + "".join(f"_{w}" for w in widths)
        if name not in weights:
            weights[name] = pack_nbits(weights[codes], weights[scales], weights[zeros], group, widths, bits)
            sdfg.add_array(name, weights[name].shape, dace.uint8)
        node.add_in_connector(NBITS_PACKED)
        state.add_edge(state.add_read(name), None, node, NBITS_PACKED, dace.Memlet.from_array(name, sdfg.arrays[name]))
        count += 1
    return count


def prepack(graph, weights: dict) -> int:
    return (conv_direct.prepack(graph, weights) + prepack_gemm(graph, weights) + prepack_qgemm(graph, weights)
            + prepack_nbits(graph, weights))


def weight_value(constant, name: str) -> np.ndarray:
    """The array passed as weight ``name``: the graph constant itself, or the packed form of one
    (``constant(name)`` looks up a graph constant)."""
    try:
        return np.asarray(constant(name), order="C")
    except KeyError:
        pass
    if (nbits := _NBITS_NAME.fullmatch(name)) is not None:
        from sdflow.passes.quantization.fuse_dequantize_matmul import NBITS_SUFFIXES  # (the pass names them)
        codes, scales, zeros = (np.asarray(constant(f"{nbits[1]}{suffix}")) for suffix in NBITS_SUFFIXES)
        return pack_nbits(codes, scales, zeros, int(nbits[3]), [int(w) for w in nbits[4][1:].split("_")],
                          int(nbits[2]))
    if (quantized := _QGEMM_NAME.fullmatch(name)) is not None:
        return pack_qgemm(np.asarray(constant(quantized[1])), [int(w) for w in quantized[2][1:].split("_")])
    if (match := _GEMM_NAME.fullmatch(name)) is not None:
        return pack_gemm(np.asarray(constant(match[1])), match[2] == "t", [int(w) for w in match[3][1:].split("_")])
    return conv_direct.weight_value(constant, name)
