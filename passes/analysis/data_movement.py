"""data-movement: bytes each op reads and writes at its boundary (every input tensor read once, every output
written once), symbolic in the model's dims. The operator-boundary model of *Data Movement Is All You Need*
(arXiv 2007.00072): what an op costs in memory traffic when it runs as its own kernel."""
from __future__ import annotations

import dataclasses

import numpy as np
import sympy

from sdflow.ir import Graph

__all__ = ["OpTraffic", "operator_traffic"]


@dataclasses.dataclass(frozen=True)
class OpTraffic:
    label: str
    op_type: str
    bytes_read: sympy.Expr
    bytes_written: sympy.Expr

    @property
    def bytes_moved(self) -> sympy.Expr:
        return self.bytes_read + self.bytes_written

    def evaluate(self, dims: dict[str, int]) -> tuple[int, int]:
        """(bytes read, bytes written) with the symbolic dims bound to ``dims``; a dim not given raises."""
        return _evaluate(self.bytes_read, dims), _evaluate(self.bytes_written, dims)


def operator_traffic(graph: Graph) -> list[OpTraffic]:
    """One record per op node, in topological order."""
    return [OpTraffic(node.label, node.op_type,
                      sum((_tensor_bytes(graph, t) for t in graph.node_inputs(node) if t), sympy.Integer(0)),
                      sum((_tensor_bytes(graph, t) for t in graph.node_outputs(node) if t), sympy.Integer(0)))
            for node in graph.op_nodes()]


def _tensor_bytes(graph: Graph, tensor: str) -> sympy.Expr:
    ttype = graph.tensor_type(tensor)
    return sympy.Mul(*[sympy.sympify(d) for d in ttype.shape], np.dtype(ttype.dtype).itemsize)


def _evaluate(expr: sympy.Expr, dims: dict[str, int]) -> int:
    value = sympy.sympify(expr).subs({s: dims[str(s)] for s in expr.free_symbols if str(s) in dims})
    if value.free_symbols:
        missing = ", ".join(sorted(str(s) for s in value.free_symbols))
        raise KeyError(f"no value for dim(s) {missing}")
    return int(value)
