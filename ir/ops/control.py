"""Control flow: ``If``, whose two branches are IR graphs of their own.

The frontend imports each branch as a graph whose inputs are the outer tensors it reads, each named (ONNX name)
after the node's input connector that feeds it, and stores it, serialised, in the ``then_branch`` /
``else_branch`` property. Codegen
lowers the node to SDFG control flow: a state that reads the condition, one state per branch running that branch's
lowered graph, and a state where they join.
"""
from __future__ import annotations

import functools
import json

import numpy as np
import sympy

from ..errors import ShapeInferenceError
from ..graph import Graph
from ..types import TensorType
from ._base import Op, op

__all__ = ["BRANCHES", "branch_graph", "serialise_branch"]

BRANCHES = ("then_branch", "else_branch")


def serialise_branch(graph: Graph) -> str:
    """A branch graph as the text an ``If`` node keeps (constants included)."""
    return json.dumps(graph.sdfg.to_json())


@functools.lru_cache(maxsize=256)
def _parse(text: str) -> Graph:
    import dace
    return Graph(dace.SDFG.from_json(json.loads(text)))


def branch_graph(node, branch: str) -> Graph:
    """The graph of ``node``'s ``branch`` (one of ``BRANCHES``); a copy the caller may change."""
    text = node.attr(branch)
    if not text or not text.startswith("{"):
        raise ShapeInferenceError(f"If: {branch} is not an imported branch graph")
    return _parse(text).copy()


def _same_type(a: TensorType, b: TensorType) -> bool:
    return a.dtype == b.dtype and a.rank == b.rank and all(
        x == y or sympy.simplify(sympy.sympify(x) - sympy.sympify(y)) == 0 for x, y in zip(a.shape, b.shape))


@op("If", since=1)
class If(Op):
    @classmethod
    def infer(cls, node, inputs, values):
        if inputs[0] is None or inputs[0].dtype != np.bool_:
            raise ShapeInferenceError("If: cond must be a bool tensor")
        then, other = (branch_graph(node, branch) for branch in BRANCHES)
        connectors = dict(zip(node.onnx_inputs[1:], inputs[1:]))
        for branch, graph in zip(BRANCHES, (then, other)):
            for name in graph.inputs:
                fed = connectors.get(graph.onnx_name(name))
                if fed is None or not _same_type(fed, graph.tensor_type(name)):
                    raise ShapeInferenceError(f"If: {branch} reads {graph.onnx_name(name)!r} as "
                                              f"{graph.tensor_type(name)}, the node gives it {fed}")
        then_types = [then.tensor_type(t) for t in then.outputs]
        other_types = [other.tensor_type(t) for t in other.outputs]
        if len(then_types) != len(other_types):
            raise ShapeInferenceError(f"If: then_branch has {len(then_types)} outputs, else_branch "
                                      f"{len(other_types)}")
        for position, (a, b) in enumerate(zip(then_types, other_types)):
            if not _same_type(a, b):
                raise ShapeInferenceError(f"If: output {position} is {a} in then_branch but {b} in else_branch "
                                          "(sdflow needs one type for both branches)")
        return then_types

    @classmethod
    def reference(cls, node, cond, *captured):
        from ..semantics import interpret
        graph = branch_graph(node, BRANCHES[0] if bool(np.asarray(cond).ravel()[0]) else BRANCHES[1])
        results = interpret(graph, dict(zip(node.onnx_inputs[1:], captured)))
        return [results[graph.onnx_name(t)] for t in graph.outputs]

    @classmethod
    def known_values(cls, node, inputs, values):
        return None  # a branch's values are not shape arithmetic
