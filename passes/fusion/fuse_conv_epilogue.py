"""fuse-conv-epilogue: Conv -> residual Add / Relu / Clip / ... (element-wise ops, or a fused element-wise kernel)
=>  one convolution whose epilogue applies them to each output plane while it is in cache."""
from __future__ import annotations

import dataclasses

from sdflow.ir import Graph
from ..infra import Pass, PassContext, PassResult, register_pass
from ._rewrite import fuse_epilogues


@register_pass
@dataclasses.dataclass(frozen=True)
class FuseConvEpilogue(Pass):
    """Conv(x, W, b) -> Add(residual) -> Relu/Clip/...  =>  one Fused convolution with a per-plane epilogue."""

    name = "fuse-conv-epilogue"

    def apply(self, graph: Graph, ctx: PassContext) -> PassResult:
        fused, absorbed, notes = fuse_epilogues(graph, "Conv", "conv", lambda node: self._conv_declines(graph, node),
                                                lambda conv, chain, notes: self._plane_chain(graph, conv, chain, notes))
        return PassResult(fused > 0, {"fused_convs": fused, "epilogue_ops": absorbed}, notes if ctx.explain else [])

    @staticmethod
    def _conv_declines(graph: Graph, node) -> str | None:
        x = graph.tensor_type(graph.node_inputs(node)[0])
        if x.dtype.name != "float32":
            return f"the convolution kernel is float32 only (got {x.dtype.name})"
        if x.rank not in (3, 4):
            return f"the convolution kernel has 1-D and 2-D forms only (input {x})"
        return None

    @staticmethod
    def _plane_chain(graph: Graph, conv, chain: list, notes: list) -> list:
        """``chain`` up to the first op reading a tensor the plane loop cannot index: each other input must be
        one value, one per channel (and sample), or a whole plane per channel (a residual)."""
        out_shape = list(graph.tensor_type(graph.node_outputs(conv)[0]).shape)
        inside = {graph.node_outputs(conv)[0]}
        for k, node in enumerate(chain):
            for tensor in graph.node_inputs(node):
                if not tensor or tensor in inside:
                    continue
                shape = list(graph.tensor_type(tensor).shape)
                shape = [1] * (len(out_shape) - len(shape)) + shape
                spatial = shape[2:]
                if spatial != out_shape[2:] and any(d != 1 for d in spatial):
                    notes.append(f"{conv.label}: epilogue stops before {node.label} ({tensor} broadcasts over "
                                 "part of the plane)")
                    return chain[:k]
            inside.update(t for t in graph.node_outputs(node) if t)
        while chain and graph.tensor_type(graph.node_outputs(chain[-1])[0]).dtype.name != "float32":
            notes.append(f"{conv.label}: epilogue stops before {chain[-1].label} (the kernel writes float32)")
            chain = chain[:-1]
        return chain
