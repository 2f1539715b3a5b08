"""Memory planning (``codegen/memory.py``): intermediate tensors share a buffer only when every reader of the
earlier one runs before every writer of the later one, in any order DaCe may emit the ops; compiled models that
reuse buffers still match ONNX Runtime."""
from __future__ import annotations

import numpy as np
from onnx import helper

import sdflow
from sdflow.codegen.lowering import lower
from sdflow.codegen.memory import reuse_transients

F = np.float32


def _chain(helpers, rng):
    """t1..t4: a chain of MatMuls, t1 also read by the last Add (live to the end); u, v: two independent
    branches of the same shape, joined by an Add."""
    nodes = [helper.make_node("MatMul", ["x", "w1"], ["t1"]), helper.make_node("MatMul", ["t1", "w2"], ["t2"]),
             helper.make_node("MatMul", ["t2", "w3"], ["t3"]), helper.make_node("MatMul", ["t3", "w4"], ["t4"]),
             helper.make_node("Add", ["t4", "t1"], ["s"]),
             helper.make_node("MatMul", ["s", "w5"], ["u"]), helper.make_node("MatMul", ["s", "w6"], ["v"]),
             helper.make_node("Add", ["u", "v"], ["y"])]
    weights = {f"w{i}": (rng.standard_normal((16, 16)) / 4).astype(F) for i in range(1, 7)}
    return helpers.make_model(nodes, [("x", F, ["n", 16])], [("y", F, ["n", 16])], weights)


def test_buffers_are_shared_only_after_the_last_reader(helpers, rng):
    """t4 takes t2's buffer (t2's reader, the third MatMul, runs before t4's writer); t3 cannot (its writer reads
    t2), nor can anything before the Add take t1's (the Add reads it last). Then s takes t3's; u takes t1's (both of
    its readers ran before u's writer) and v the buffer t4 left (t2's), never u's: u and v are written by
    independent ops."""
    sdfg, _ = lower(sdflow.optimize(sdflow.load(_chain(helpers, rng)), "O1"))
    renamed = reuse_transients(sdfg)
    assert renamed == {"t4": "t2", "s": "t3", "u": "t1", "v": "t2"}
    sdfg.validate()
    assert {"t1", "t2", "t3"} <= set(sdfg.arrays) and not set(renamed) & set(sdfg.arrays)


def test_models_with_shared_buffers_match_onnxruntime(helpers, rng, monkeypatch):
    monkeypatch.setenv("SDFLOW_GRAPH_CACHE", "0")
    model = _chain(helpers, rng)
    feeds = [{"x": rng.standard_normal((n, 16)).astype(F)} for n in (1, 5)]
    helpers.check_against_ort(model, feeds, passes="O1")
    monkeypatch.setenv("SDFLOW_MEMORY_REUSE", "0")  # the switch: every tensor its own buffer, same numbers
    helpers.check_against_ort(model, feeds, passes="O1")
