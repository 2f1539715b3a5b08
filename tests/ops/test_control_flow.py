"""If lowered to SDFG control flow (ir/ops/control.py, codegen/lowering/control.py): a condition computed at run
time picks a branch in native code, a condition known at compile time inlines its branch; numbers against ONNX
Runtime on both branches."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

import sdflow

pytestmark = pytest.mark.compiled

F = np.float32


def _branch(name, nodes, output, shape=("n", 8), initializers=()):
    return helper.make_graph(nodes, name, [], [helper.make_tensor_value_info(output, TensorProto.FLOAT, list(shape))],
                             list(initializers))


def _if_model(helpers, rng, cond_read_again=False, else_shape=("n", 8)):
    """y = If(sum(x) > 0): x @ w + 1 (w and the 1 from the outer scope and the branch), else -x.
    ``cond_read_again``: the condition is also read by an op of the state, and a later bool tensor of its shape
    exists (the memory plan must not give that tensor the condition's buffer: the branch reads it after)."""
    then = _branch("then", [helper.make_node("MatMul", ["x", "w"], ["t0"]), helper.make_node("Add", ["t0", "one"],
                                                                                               ["then_out"])],
                   "then_out", initializers=[helper.make_tensor("one", TensorProto.FLOAT, [8], [1.0] * 8)])
    other = _branch("else", [helper.make_node("Neg", ["x"], ["neg"]), helper.make_node(
        "Reshape", ["neg", "target"], ["else_out"])], "else_out", else_shape)
    nodes = [helper.make_node("ReduceSum", ["x"], ["s"], keepdims=0), helper.make_node("Greater", ["s", "zero"], ["c"]),
             helper.make_node("If", ["c"], ["y"], then_branch=then, else_branch=other)]
    outputs = [("y", F, ["n", 8])]
    if cond_read_again:
        nodes += [helper.make_node("Not", ["c"], ["nc"]), helper.make_node("Less", ["s", "zero"], ["negative"]),
                  helper.make_node("And", ["nc", "negative"], ["d"]), helper.make_node("Cast", ["d"], ["z"], to=1)]
        outputs.append(("z", F, []))
    weights = {"w": (rng.standard_normal((16, 16)) / 4).astype(F)[:8, :8].copy(), "zero": np.array(0, F),
               "target": np.array([-1, 8], np.int64)}
    return helpers.make_model(nodes, [("x", F, ["n", 8])], outputs, weights)


def _branch_of(model, node: int, name: str):
    return next(a.g for a in model.graph.node[node].attribute if a.name == name)


def _feeds(rng, batch=3):
    return [{"x": (rng.standard_normal((batch, 8)) + sign).astype(F)} for sign in (2.0, -2.0, 2.0)]


def test_a_run_time_condition_picks_a_branch_in_native_code(helpers, rng):
    model = _if_model(helpers, rng)
    compiled = sdflow.compile(model, passes="O2")
    helpers.check_against_ort(model, _feeds(rng) + _feeds(rng, batch=1), passes="O2")
    source = "\n".join(p.read_text() for p in (compiled.build_folder / "src" / "cpu").glob("*.cpp"))
    assert "if (" in source and "cblas_sgemm" in source  # a branch in the program, the then-branch's MatMul in it
    graph = sdflow.load(model)
    assert [n.op_type for n in graph.op_nodes()] == ["ReduceSum", "Greater", "If"]
    w = next(i for i in model.graph.initializer if i.name == "w")
    for feeds in _feeds(rng):  # the numpy reference runs the branch too
        x = feeds["x"]
        expected = x @ onnx.numpy_helper.to_array(w) + 1 if x.sum() > 0 else -x
        np.testing.assert_allclose(sdflow.ir.interpret(graph, feeds)["y"], expected, rtol=1e-5, atol=1e-5)


def test_the_condition_keeps_its_buffer_until_the_branch_has_read_it(helpers, rng):
    model = _if_model(helpers, rng, cond_read_again=True)
    helpers.check_against_ort(model, _feeds(rng), passes="O0")  # O2 would fuse Not, Less and And into one op


def test_a_condition_known_at_compile_time_inlines_its_branch(helpers, rng):
    then = _branch("then", [helper.make_node("Relu", ["x"], ["r"])], "r")
    other = _branch("else", [helper.make_node("Neg", ["x"], ["m"])], "m")
    nodes = [helper.make_node("Shape", ["x"], ["shape"]), helper.make_node("Size", ["shape"], ["rank"]),
             helper.make_node("Equal", ["rank", "two"], ["c"]),
             helper.make_node("If", ["c"], ["y"], then_branch=then, else_branch=other)]
    model = helpers.make_model(nodes, [("x", F, ["n", 8])], [("y", F, ["n", 8])], {"two": np.array(2, np.int64)})
    graph = sdflow.load(model)
    assert "If" not in [n.op_type for n in graph.op_nodes()] and "Relu" in [n.op_type for n in graph.op_nodes()]
    helpers.check_against_ort(model, _feeds(rng), passes="O1")


def test_branches_of_different_shapes_are_refused_naming_the_node(helpers, rng):
    model = _if_model(helpers, rng, else_shape=("n", 2, 4))
    _branch_of(model, 2, "else_branch").node[1].input[1] = "target3"
    model.graph.initializer.append(helper.make_tensor("target3", TensorProto.INT64, [3], [-1, 2, 4]))
    with pytest.raises(sdflow.ShapeInferenceError, match="If.*then_branch.*else_branch"):
        sdflow.load(model)


def test_an_unsupported_op_inside_a_branch_is_named(helpers, rng):
    model = _if_model(helpers, rng)
    _branch_of(model, 2, "else_branch").node[0].op_type = "NonZero"
    with pytest.raises(sdflow.UnsupportedOpError, match="NonZero"):
        sdflow.load(model)


def test_nested_if(helpers, rng):
    """An If inside a branch reads a value of the outermost scope (x) and one of its own branch's (t)."""
    inner_then = _branch("inner_then", [helper.make_node("Add", ["x", "t"], ["a"])], "a")
    inner_else = _branch("inner_else", [helper.make_node("Sub", ["x", "t"], ["b"])], "b")
    then = _branch("then", [helper.make_node("Relu", ["x"], ["t"]),
                            helper.make_node("If", ["c2"], ["inner"], then_branch=inner_then,
                                             else_branch=inner_else)], "inner")
    other = _branch("else", [helper.make_node("Neg", ["x"], ["m"])], "m")
    nodes = [helper.make_node("ReduceSum", ["x"], ["s"], keepdims=0), helper.make_node("Greater", ["s", "zero"], ["c"]),
             helper.make_node("ReduceMax", ["x"], ["top"], keepdims=0),
             helper.make_node("Greater", ["top", "three"], ["c2"]),
             helper.make_node("If", ["c"], ["y"], then_branch=then, else_branch=other)]
    model = helpers.make_model(nodes, [("x", F, ["n", 8])], [("y", F, ["n", 8])],
                               {"zero": np.array(0, F), "three": np.array(3, F)})
    feeds = _feeds(rng) + [{"x": (rng.standard_normal((3, 8)) * 0.1 + 1).astype(F)}]
    helpers.check_against_ort(model, feeds, passes="O2")


def test_the_verifier_refuses_sharing_a_buffer_a_condition_reads(helpers, rng):
    """The plan that gave the condition's buffer to a later tensor (before conditions counted as readers) is
    refused by the verifier, not trusted."""
    from sdflow.codegen.lowering import expand, lower
    from sdflow.ir import VerificationError, verify_buffer_sharing
    sdfg, _ = lower(sdflow.optimize(sdflow.load(_if_model(helpers, rng, cond_read_again=True)), "O0"))
    expand(sdfg)
    state = sdfg.start_state
    by_name = {n.data: n for n in state.data_nodes()}
    tenants = {by_name["c"]: "c", by_name["d"]: "d"}
    by_name["d"].data = "c"
    for edge in state.in_edges(by_name["d"]) + state.out_edges(by_name["d"]):
        for tree_edge in state.memlet_tree(edge):
            tree_edge.data.data = "c"
    with pytest.raises(VerificationError, match="branch condition"):
        verify_buffer_sharing(sdfg, tenants)
