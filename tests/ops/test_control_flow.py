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
    assert "if (" in source and "sdflow_kernels::gemm::" in source  # a branch in the program, its MatMul in it
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
    """An If inside a branch reads a value of the outermost scope (x) and one of its own branch's (t); its weight
    is hoisted through both levels."""
    inner_then = _branch("inner_then", [helper.make_node("Add", ["x", "t"], ["a0"]),  # a weight of its own too
                                        helper.make_node("Mul", ["a0", "scale"], ["a"])], "a",
                         initializers=[helper.make_tensor("scale", TensorProto.FLOAT, [8], list(range(8)))])
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


def _body(nodes, outputs, carried=(("h", ["n", 8]), ), initializers=()):
    """A Loop body: inputs (i, cond, carried...), outputs as given ((name, elem type, shape))."""
    inputs = [helper.make_tensor_value_info("i", TensorProto.INT64, []),
              helper.make_tensor_value_info("cond_in", TensorProto.BOOL, [])]
    inputs += [helper.make_tensor_value_info(name, TensorProto.FLOAT, shape) for name, shape in carried]
    return helper.make_graph(nodes, "body", inputs,
                             [helper.make_tensor_value_info(n, t, s) for n, t, s in outputs], list(initializers))


def _recurrence(helpers, rng, scan: bool):
    """h_{t+1} = tanh(x[:, t] @ w + h_t @ u) over every step t of x (trip count = x's second dim, symbolic);
    with ``scan``, every h_{t+1} is also stacked into an output."""
    nodes = [helper.make_node("Gather", ["x", "i"], ["x_t"], axis=1), helper.make_node("MatMul", ["x_t", "w"], ["a"]),
             helper.make_node("MatMul", ["h", "u"], ["b"]), helper.make_node("Add", ["a", "b"], ["s"]),
             helper.make_node("Tanh", ["s"], ["h_next"]), helper.make_node("Identity", ["cond_in"], ["cond_out"])]
    outputs = [("cond_out", TensorProto.BOOL, []), ("h_next", TensorProto.FLOAT, ["n", 8])]
    if scan:  # each row also carries its iteration number: a loop that counts wrong shows
        nodes += [helper.make_node("Cast", ["i"], ["i_f"], to=TensorProto.FLOAT),
                  helper.make_node("Add", ["h_next", "i_f"], ["h_row"])]
        outputs.append(("h_row", TensorProto.FLOAT, ["n", 8]))
    loop_outputs = ["h_final"] + (["h_all"] if scan else [])
    nodes = [helper.make_node("Shape", ["x"], ["shape"]), helper.make_node("Gather", ["shape", "one"], ["steps"]),
             helper.make_node("Mul", ["x", "zero"], ["x0"]), helper.make_node("ReduceSum", ["x0", "axes"], ["h0"],
                                                                           keepdims=0),
             # As TorchScript exports a for loop: a trip count and a constant true condition.
             helper.make_node("Loop", ["steps", "true", "h0"], loop_outputs, body=_body(nodes, outputs))]
    weights = {"w": (rng.standard_normal((8, 8)) / 2).astype(F), "u": (rng.standard_normal((8, 8)) / 2).astype(F),
               "one": np.array(1, np.int64), "zero": np.array(0, F), "axes": np.array([1], np.int64),
               "true": np.array(True)}
    declared = [("h_final", F, ["n", 8])] + ([("h_all", F, ["steps", "n", 8])] if scan else [])
    return helpers.make_model(nodes, [("x", F, ["n", "steps", 8])], declared, weights)


@pytest.mark.parametrize("scan", [False, True])
def test_a_loop_over_every_step_of_a_symbolic_length(helpers, rng, scan):
    """The trip count is the input's symbolic length; the loop-carried state and the stacked rows match ONNX
    Runtime at several lengths from one compile."""
    model = _recurrence(helpers, rng, scan)
    graph = sdflow.load(model)
    assert "Loop" in [n.op_type for n in graph.op_nodes()]
    feeds = [{"x": rng.standard_normal((n, steps, 8)).astype(F)} for n, steps in ((2, 5), (1, 1), (3, 9))]
    helpers.check_against_ort(model, feeds, passes="O2")
    for feed in feeds[:1]:
        reference = sdflow.ir.interpret(graph, feed)
        h = np.zeros((feed["x"].shape[0], 8), F)
        for t in range(feed["x"].shape[1]):
            h = np.tanh(feed["x"][:, t] @ onnx.numpy_helper.to_array(model.graph.initializer[0]) +
                        h @ onnx.numpy_helper.to_array(model.graph.initializer[1]))
        np.testing.assert_allclose(reference["h_final"], h, rtol=1e-5, atol=1e-5)


def test_a_loop_that_stops_on_its_condition(helpers, rng):
    """while (sum(h) < limit and i < M): h = h * 2 + 1, with M a graph input: the data decide how many
    iterations run."""
    body = _body([helper.make_node("Mul", ["h", "two"], ["m"]), helper.make_node("Add", ["m", "one_f"], ["h_next"]),
                  helper.make_node("ReduceSum", ["h_next"], ["total"], keepdims=0),
                  helper.make_node("Less", ["total", "limit"], ["cond_out"])],
                 [("cond_out", TensorProto.BOOL, []), ("h_next", TensorProto.FLOAT, [4])], carried=(("h", [4]), ))
    nodes = [helper.make_node("Loop", ["M", "go", "h0"], ["h_final"], body=body)]
    model = helpers.make_model(nodes, [("M", np.int64, []), ("go", np.bool_, []), ("h0", F, [4])],
                               [("h_final", F, [4])], {"two": np.array(2, F), "one_f": np.array(1, F),
                                                       "limit": np.array(100, F)})
    feeds = [{"M": np.array(m, np.int64), "go": np.array(go), "h0": rng.standard_normal(4).astype(F)}
             for m, go in ((50, True), (2, True), (0, True), (50, False))]
    helpers.check_against_ort(model, feeds, passes="O2")


def test_scan_outputs_of_a_data_dependent_length_are_refused(helpers, rng):
    body = _body([helper.make_node("Add", ["h", "h"], ["h_next"]), helper.make_node("Identity", ["h_next"], ["row"]),
                  helper.make_node("ReduceSum", ["h_next"], ["total"], keepdims=0),
                  helper.make_node("Less", ["total", "limit"], ["cond_out"])],
                 [("cond_out", TensorProto.BOOL, []), ("h_next", TensorProto.FLOAT, [4]),
                  ("row", TensorProto.FLOAT, [4])], carried=(("h", [4]), ))
    nodes = [helper.make_node("Loop", ["M", "", "h0"], ["h_final", "rows"], body=body)]
    model = helpers.make_model(nodes, [("h0", F, [4])], [("h_final", F, [4]), ("rows", F, ["k", 4])],
                               {"M": np.array(10, np.int64), "limit": np.array(100, F)})
    with pytest.raises(sdflow.ShapeInferenceError, match="Loop.*scan outputs"):
        sdflow.load(model)


@pytest.mark.parametrize("directions", [(0, 0), (1, 0), (0, 1)])
def test_scan_threads_a_state_through_the_slices(helpers, rng, directions):
    """A cumulative sum with a weight from the outer scope: Scan over axis 1 of x (symbolic length), forwards or
    backwards, stacking each step's state along output axis 1 (forwards or backwards)."""
    body = helper.make_graph(
        [helper.make_node("MatMul", ["x_t", "w"], ["p"]), helper.make_node("Add", ["s", "p"], ["s_next"]),
         helper.make_node("Identity", ["s_next"], ["row"])], "body",
        [helper.make_tensor_value_info("s", TensorProto.FLOAT, ["n", 4]),
         helper.make_tensor_value_info("x_t", TensorProto.FLOAT, ["n", 8])],
        [helper.make_tensor_value_info("s_next", TensorProto.FLOAT, ["n", 4]),
         helper.make_tensor_value_info("row", TensorProto.FLOAT, ["n", 4])])
    nodes = [helper.make_node("Scan", ["s0", "x"], ["s_final", "rows"], body=body, num_scan_inputs=1,
                              scan_input_axes=[1], scan_input_directions=[directions[0]], scan_output_axes=[1],
                              scan_output_directions=[directions[1]])]
    model = helpers.make_model(nodes, [("s0", F, ["n", 4]), ("x", F, ["n", "steps", 8])],
                               [("s_final", F, ["n", 4]), ("rows", F, ["n", "steps", 4])],
                               {"w": rng.standard_normal((8, 4)).astype(F)})
    feeds = [{"s0": rng.standard_normal((n, 4)).astype(F), "x": rng.standard_normal((n, steps, 8)).astype(F)}
             for n, steps in ((2, 5), (1, 1), (3, 7))]
    helpers.check_against_ort(model, feeds, passes="O2")
    x, s0 = feeds[0]["x"], feeds[0]["s0"]
    reference = sdflow.ir.interpret(sdflow.load(model), feeds[0])
    order = range(x.shape[1] - 1, -1, -1) if directions[0] else range(x.shape[1])
    total = s0 + sum(x[:, t] @ onnx.numpy_helper.to_array(model.graph.initializer[0]) for t in order)
    np.testing.assert_allclose(reference["s_final"], total, rtol=1e-4, atol=1e-4)
