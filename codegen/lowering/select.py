"""The selection step: which kernel each op node runs, written on the node as its ``implementation`` (DaCe's
library-node property, shown by the viewers and part of the SDFG's hash, hence of the build key). The lowering
reads the name back instead of deciding again; an op no kernel family applies to keeps ``sdflow`` (the one
expansion decides alone).

Names: a convolution's ``winograd``, ``direct``, ``direct-channels`` (``conv_direct.kernel_kind``'s forms) or
``im2col`` (+ BLAS); a depthwise one's ``depthwise-channels``, ``depthwise-rows`` or ``depthwise-planes``; a fused 1x1 + depthwise pair
joins its two with ``+``. A float32 product's ``gemm-packed`` (``codegen/kernels/gemm.h`` on a weight packed at
load), ``gemm`` (gemm.h, operands packed per call) or ``blas``."""
from __future__ import annotations

import dace

from ..options import KernelOptions
from ._expansion import IMPLEMENTATION
from .conv_direct import kernel_kind
from .nn import depthwise_form

__all__ = ["select_kernels"]

_CONV_NAMES = {"winograd": "winograd", "channels": "direct-channels", "packed": "direct", None: "im2col"}


def _conv_name(graph, conv, x_shape: list, x_dtype, w: str, options: KernelOptions) -> str:
    sdfg = graph.sdfg
    constant = w in sdfg.constants_prop
    w_shape = list(graph.constant(w).shape) if constant else list(sdfg.arrays[w].shape)
    group = conv.attr("group", 1)
    if len(x_shape) == 4 and group > 1 and w_shape[1] == 1:
        return "depthwise-" + depthwise_form(conv, x_shape, w_shape, options=options)
    if not constant:  # a weight computed at run time: nothing to pack
        return "im2col"
    return _CONV_NAMES[kernel_kind(conv, x_shape, w_shape, x_dtype, options=options)]


def _product_name(graph, node, a: str, options: KernelOptions, packable: bool) -> str | None:
    if graph.sdfg.arrays[a].dtype != dace.float32 or (node.op_type == "Gemm" and node.attr("transA", 0)):
        return None
    if options.gemm == "blas":
        return "blas"
    return "gemm-packed" if packable else "gemm"


def select_kernels(graph, options: KernelOptions) -> dict[str, int]:
    """Sets ``implementation`` on every Conv, MatMul, Gemm and fused op of those; returns how many of each name."""
    from .packing import gemm_candidate  # (packing imports the lowering modules this one does)
    counts: dict[str, int] = {}
    for node in graph.op_nodes():
        names = graph.node_inputs(node)
        name = None
        fused = node.parsed.kind if node.op_type == "Fused" else None
        if node.op_type == "Conv" and not node.domain_name and len(names) > 1 and names[0] and names[1] \
                and len(graph.sdfg.arrays[names[0]].shape) in (3, 4):
            x = graph.sdfg.arrays[names[0]]
            name = _conv_name(graph, node, list(x.shape), x.dtype.as_numpy_dtype(), names[1], options)
        elif fused in ("conv", "conv_depthwise"):
            types = node.parsed.types([graph.tensor_type(n) if n else None for n in names])
            # (the second convolution of a pair reads the first one's result, a value inside the kernel)
            name = "+".join(_conv_name(graph, step.node(), list(types[step.args[0]].shape), types[step.args[0]].dtype,
                                       names[int(step.args[1][2:])], options)
                            for step in node.parsed.steps if step.op_type == "Conv")
        elif (node.op_type in ("MatMul", "Gemm") and not node.domain_name) or fused == "matmul":
            a = names[int(node.parsed.steps[0].args[0][2:])] if fused else names[0]
            candidate = gemm_candidate(graph, node)
            packable = candidate is not None and names[candidate[0]] in graph.sdfg.constants_prop
            name = _product_name(graph, node, a, options, packable) if a else None
        if not name:
            continue
        implementations = type(node).implementations
        if name not in implementations and IMPLEMENTATION in implementations:
            type(node).register_implementation(name, implementations[IMPLEMENTATION])  # the same expansion
        node.implementation = name
        counts[name] = counts.get(name, 0) + 1
    return counts
