"""Control flow: ``If``, ``Loop`` and ``Scan``, whose subgraphs (two branches, a body) are IR graphs of their own.

The frontend imports each subgraph as a graph whose inputs are named (ONNX name) after the node's input connector
that feeds them: the outer tensors it reads (``outer_<k>``); a Loop body also ``iteration``, ``condition`` and
the loop-carried values (``carried_<k>``); a Scan body its states (``state_<k>``) and one slice of each scanned
input (``scan_<k>``); it stores the graph, serialised, in the node's graph property
(``then_branch`` / ``else_branch`` / ``body``). Codegen lowers the nodes to SDFG control flow: states that read
the condition, a state per branch or a loop of states around the body, each running the lowered subgraph.
"""
from __future__ import annotations

import functools
import json

import numpy as np
import sympy

from ..errors import ShapeInferenceError
from ..graph import Graph
from ..types import TensorType, to_dim
from ._base import Op, normalize_axis, op

__all__ = ["BRANCHES", "SUBGRAPHS", "branch_graph", "serialise_branch", "loop_counts", "runs_every_iteration",
           "LOOP_INPUTS", "SCAN_INPUTS", "scan_layout"]

BRANCHES = ("then_branch", "else_branch")
SUBGRAPHS = {"If": BRANCHES, "Loop": ("body", ), "Scan": ("body", )}  # op type -> its subgraph properties


def serialise_branch(graph: Graph) -> str:
    """A branch graph as the text an ``If`` node keeps (constants included)."""
    return json.dumps(graph.sdfg.to_json())


@functools.lru_cache(maxsize=256)
def _parse(text: str) -> Graph:
    import dace
    return Graph(dace.SDFG.from_json(json.loads(text)))


def branch_graph(node, branch: str) -> Graph:
    """The graph of ``node``'s subgraph property ``branch`` (``then_branch``, ``else_branch``, ``body``); a copy the
    caller may change."""
    text = node.attr(branch)
    if not text or not text.startswith("{"):
        raise ShapeInferenceError(f"{node.op_type}: {branch} is not an imported subgraph")
    return _parse(text).copy()


def _check_inputs(node, graph: Graph, inputs, what: str, own=()) -> None:
    """Every input of a subgraph but its ``own`` ones is fed by the node's connector of its ONNX name, with the
    same type."""
    connectors = dict(zip(node.onnx_inputs, inputs))
    for name in graph.inputs:
        if graph.onnx_name(name) in own:
            continue
        fed = connectors.get(graph.onnx_name(name))
        if fed is None or not fed.matches(graph.tensor_type(name)):
            raise ShapeInferenceError(f"{node.op_type}: {what} reads {graph.onnx_name(name)!r} as "
                                      f"{graph.tensor_type(name)}, the node gives it {fed}")


@op("If", since=1)
class If(Op):
    @classmethod
    def infer(cls, node, inputs, values):
        if inputs[0] is None or inputs[0].dtype != np.bool_:
            raise ShapeInferenceError("If: cond must be a bool tensor")
        then, other = (branch_graph(node, branch) for branch in BRANCHES)
        for branch, graph in zip(BRANCHES, (then, other)):
            _check_inputs(node, graph, inputs, branch)
        then_types = [then.tensor_type(t) for t in then.outputs]
        other_types = [other.tensor_type(t) for t in other.outputs]
        if len(then_types) != len(other_types):
            raise ShapeInferenceError(f"If: then_branch has {len(then_types)} outputs, else_branch "
                                      f"{len(other_types)}")
        for position, (a, b) in enumerate(zip(then_types, other_types)):
            if not a.matches(b):
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


LOOP_INPUTS = ("iteration", "condition")  # a loop body's own inputs beside the loop-carried values


def loop_counts(node) -> tuple[int, int]:
    """(loop-carried values, outer tensors) a Loop node passes its body."""
    carried = sum(1 for c in node.onnx_inputs if c.startswith("carried_"))
    return carried, sum(1 for c in node.onnx_inputs if c.startswith("outer_"))


def runs_every_iteration(node, body: Graph, cond_value) -> bool:
    """Whether the loop runs exactly its trip count: no condition, or one known true, and a body whose condition
    output is a constant true or its condition input passed through (Identity)."""
    if node.onnx_inputs[1] and (cond_value is None or not bool(np.asarray(cond_value).ravel()[0])):
        return False
    tensor = body.outputs[0]
    while True:
        producer = body.producer(tensor)
        if producer is None or producer.op_type != "Identity":
            break
        tensor = body.node_inputs(producer)[0]
    if body.is_constant(tensor):
        return bool(np.asarray(body.constant(tensor)).ravel()[0])
    return tensor in body.inputs and body.onnx_name(tensor) == "condition"


@op("Loop", since=1)
class Loop(Op):
    """Runs ``body`` while the iteration count is below ``M`` (when given) and the condition holds. Scan outputs
    (stacked per iteration) need a loop that runs exactly ``M`` iterations, ``M`` known at compile time."""

    optional_value_inputs = (0, 1)

    @classmethod
    def infer(cls, node, inputs, values):
        values = list(values) + [None] * (len(inputs) - len(values))
        body = branch_graph(node, "body")
        carried, _ = loop_counts(node)
        _check_inputs(node, body, inputs, "body", own=LOOP_INPUTS)
        outputs = [body.tensor_type(t) for t in body.outputs]
        if len(outputs) < 1 + carried or outputs[0].dtype != np.bool_:
            raise ShapeInferenceError("Loop: the body's first output must be the bool condition, then one output "
                                      f"per loop-carried value ({carried})")
        for k in range(carried):
            before, after = inputs[2 + k], outputs[1 + k]
            if not before.matches(after):
                raise ShapeInferenceError(f"Loop: loop-carried value {k} is {before} before the body and {after} "
                                          "after it (sdflow needs one type for every iteration)")
        scans = outputs[1 + carried:]
        if not scans:
            return outputs[1:]
        trip = values[0] if node.onnx_inputs[0] else None
        if trip is None or not runs_every_iteration(node, body, values[1]):
            raise ShapeInferenceError("Loop: scan outputs need a trip count known at compile time and a loop that "
                                      "runs every iteration (their length would depend on the data)")
        count = to_dim(np.asarray(trip).ravel()[0])
        return outputs[1:1 + carried] + [TensorType(t.dtype, [count, *t.shape]) for t in scans]

    @classmethod
    def reference(cls, node, trip=None, cond=None, *rest):
        from ..semantics import interpret
        body = branch_graph(node, "body")
        carried, _ = loop_counts(node)
        state, outer = list(rest[:carried]), dict(zip(node.onnx_inputs[2 + carried:], rest[carried:]))
        names = [body.onnx_name(t) for t in body.outputs]
        go = True if cond is None else bool(np.asarray(cond).ravel()[0])
        scans, iteration = [[] for _ in names[1 + carried:]], 0
        while go and (trip is None or iteration < int(np.asarray(trip).ravel()[0])):
            feeds = {"iteration": np.array(iteration, np.int64), "condition": np.array(go),
                     **{f"carried_{k}": v for k, v in enumerate(state)}, **outer}
            results = interpret(body, feeds)
            go = bool(np.asarray(results[names[0]]).ravel()[0])
            state = [results[n] for n in names[1:1 + carried]]
            for scan, name in zip(scans, names[1 + carried:]):
                scan.append(results[name])
            iteration += 1
        empty = [np.zeros((0, *map(int, body.tensor_type(t).shape)), body.tensor_type(t).dtype)
                 for t in body.outputs[1 + carried:]] if iteration == 0 else []
        return state + (empty or [np.stack(s) for s in scans])

    @classmethod
    def known_values(cls, node, inputs, values):
        return None


SCAN_INPUTS = ("initial_state_", "scan_input_")  # a Scan node's own input connectors (then outer ones)


def scan_layout(node, ranks: list[int]) -> tuple[int, list[int], list[int], list[int], list[int]]:
    """(states N, scan input axes, their directions, scan output axes, their directions) of a Scan node whose
    non-outer inputs have ``ranks`` (negative axes normalised)."""
    scanned = node.attr("num_scan_inputs")
    states = len(ranks) - scanned
    axes = list(node.attr("scan_input_axes") or [0] * scanned)
    directions = list(node.attr("scan_input_directions") or [0] * scanned)
    axes = [normalize_axis(a, r) for a, r in zip(axes, ranks[states:])]
    return states, axes, directions, list(node.attr("scan_output_axes") or []), \
        list(node.attr("scan_output_directions") or [])


@op("Scan", since=9)
class Scan(Op):
    """Runs ``body`` once per slice of the scanned inputs (along their axes, forwards or backwards), threading the
    states through; the body's other outputs are stacked along the scan output axes."""

    @classmethod
    def infer(cls, node, inputs, values):
        body = branch_graph(node, "body")
        own = [t for c, t in zip(node.onnx_inputs, inputs) if c.startswith(SCAN_INPUTS)]
        states, axes, _, out_axes, _ = scan_layout(node, [t.rank for t in own])
        _check_inputs(node, body, inputs, "body", own=[f"state_{k}" for k in range(states)] +
                      [f"scan_{k}" for k in range(len(axes))])
        lengths = {sympy.sympify(t.shape[a]) for t, a in zip(own[states:], axes)}
        if len(lengths) != 1:
            raise ShapeInferenceError(f"Scan: the scanned inputs have different lengths {sorted(map(str, lengths))}")
        length = to_dim(lengths.pop())
        outputs = [body.tensor_type(t) for t in body.outputs]
        for k in range(states):
            if not own[k].matches(outputs[k]):
                raise ShapeInferenceError(f"Scan: state {k} is {own[k]} before the body and {outputs[k]} after it")
        stacked = []
        for k, row in enumerate(outputs[states:]):
            axis = normalize_axis(out_axes[k] if k < len(out_axes) else 0, row.rank + 1)
            stacked.append(TensorType(row.dtype, [*row.shape[:axis], length, *row.shape[axis:]]))
        return outputs[:states] + stacked

    @classmethod
    def reference(cls, node, *arrays):
        from ..semantics import interpret
        body = branch_graph(node, "body")
        own = [a for c, a in zip(node.onnx_inputs, arrays) if c.startswith(SCAN_INPUTS)]
        outer = {c: a for c, a in zip(node.onnx_inputs, arrays) if not c.startswith(SCAN_INPUTS)}
        states, axes, directions, out_axes, out_directions = scan_layout(node, [np.ndim(a) for a in own])
        length = np.shape(own[states])[axes[0]] if len(own) > states else 0
        current, rows = list(own[:states]), [[] for _ in body.outputs[states:]]
        names = [body.onnx_name(t) for t in body.outputs]
        for step in range(length):
            slices = {f"scan_{j}": np.take(x, length - 1 - step if d else step, axis=a)
                      for j, (x, a, d) in enumerate(zip(own[states:], axes, directions + [0] * len(axes)))}
            results = interpret(body, {**outer, **slices, **{f"state_{k}": v for k, v in enumerate(current)}})
            current = [results[n] for n in names[:states]]
            for row, name in zip(rows, names[states:]):
                row.append(results[name])
        if length == 0:
            raise ShapeInferenceError("Scan: the scanned inputs are empty")
        stacked = []
        for k, row in enumerate(rows):
            if k < len(out_directions) and out_directions[k]:
                row = row[::-1]
            axis = normalize_axis(out_axes[k] if k < len(out_axes) else 0, np.ndim(row[0]) + 1)
            stacked.append(np.stack(row, axis=axis))
        return current + stacked

    @classmethod
    def known_values(cls, node, inputs, values):
        return None
