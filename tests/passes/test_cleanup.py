"""The O1 cleanup passes: structure (what was rewritten), meaning (numbers against ONNX Runtime before and
after), negative cases (what must stay), and idempotence."""
from __future__ import annotations

import numpy as np
import pytest
from onnx import helper

from sdflow.frontends.onnx import import_model
from sdflow.ir import ShapeInferenceError, interpret, print_graph
from sdflow.ort import run_onnxruntime
from sdflow.passes import PassContext, parse_pipeline, run_pipeline

F, I = np.float32, np.int64


def _apply(graph, spec, explain=True):
    (pass_, ) = parse_pipeline(spec)
    return pass_.apply(graph, PassContext(explain=explain))


def _op_types(graph):
    return [n.op_type for n in graph.op_nodes()]


def _assert_matches_onnxruntime(graph, model, feeds):
    """The rewritten graph, run by the numpy references, still computes what ONNX Runtime computes."""
    got = interpret(graph, feeds)
    for name, expected in run_onnxruntime(model, feeds).items():
        np.testing.assert_allclose(got[name], expected, rtol=1e-4, atol=1e-5, err_msg=name)


@pytest.fixture
def folding_model(helpers):
    """y = x @ Transpose(w) + Shape(x)-derived constant; Relu(x) is dead; 'unused' is an unused initializer."""
    nodes = [
        helper.make_node("Transpose", ["w"], ["wt"], perm=[1, 0]),
        helper.make_node("MatMul", ["x", "wt"], ["mm"]),
        helper.make_node("Shape", ["x"], ["sx"], start=1),
        helper.make_node("Cast", ["sx"], ["sxf"], to=1),
        helper.make_node("Add", ["mm", "sxf"], ["y"]),
        helper.make_node("Relu", ["x"], ["dead"]),
    ]
    rng = np.random.default_rng(0)
    return helpers.make_model(nodes, [("x", F, ["N", 4])], [("y", F, ["N", 3])],
                              {"w": rng.standard_normal((3, 4)).astype(F), "unused": np.ones(5, F)})


def test_fold_constants_structure(folding_model):
    graph = import_model(folding_model)
    result = _apply(graph, "fold-constants")
    assert result.modified and result.stats["folded_ops"] == 3  # Transpose, Shape (static dim), Cast
    assert _op_types(graph) == ["MatMul", "Add", "Relu"]
    folded = graph.constant(graph.node_inputs(graph.op_nodes()[0])[1])
    np.testing.assert_array_equal(folded, folding_model_weights(folding_model).T)
    assert not _apply(graph, "fold-constants").modified  # idempotent
    _assert_matches_onnxruntime(graph, folding_model, {"x": np.ones((3, 4), F)})


def folding_model_weights(model):
    from onnx import numpy_helper
    return next(numpy_helper.to_array(i) for i in model.graph.initializer if i.name == "w")


def test_fold_constants_negative(helpers):
    # Ops reading a graph input, and an op over constants that writes a graph output, stay.
    nodes = [helper.make_node("Relu", ["x"], ["r"]),
             helper.make_node("Add", ["c1", "c2"], ["y"])]
    model = helpers.make_model(nodes, [("x", F, [2])], [("r", F, [2]), ("y", F, [2])],
                               {"c1": np.ones(2, F), "c2": np.ones(2, F)})
    graph = import_model(model)
    result = _apply(graph, "fold-constants")
    assert not result.modified and _op_types(graph) == ["Relu", "Add"]
    assert any("writes a graph output" in note for note in result.notes)


def test_folding_a_dead_op_leaves_no_isolated_node(helpers):
    # ONNX function bodies compute values they never use (LayerNormalization's expansion: Rank of its input);
    # folding such an op must not leave its constant behind as an isolated node, which DaCe rejects.
    from sdflow.ir import verify
    nodes = [helper.make_node("Shape", ["x"], ["s"]), helper.make_node("Size", ["s"], ["rank"]),
             helper.make_node("Relu", ["x"], ["y"])]
    graph = import_model(helpers.make_model(nodes, [("x", F, [2, 3])], [("y", F, [2, 3])]))
    result = _apply(graph, "fold-constants")
    assert result.modified and _op_types(graph) == ["Relu"]
    assert all(graph.state.degree(n) > 0 for n in graph.state.data_nodes())
    assert not graph.constants
    verify(graph, dace_validation=True)


def test_an_input_only_a_dead_op_read_stays_an_argument_without_an_isolated_node(helpers):
    from sdflow.ir import verify
    nodes = [helper.make_node("Relu", ["x"], ["y"]), helper.make_node("Neg", ["unused"], ["dead"])]
    graph = import_model(helpers.make_model(nodes, [("x", F, [2]), ("unused", F, [2])], [("y", F, [2])]))
    assert _apply(graph, "eliminate-dead-nodes").modified and _op_types(graph) == ["Relu"]
    assert [graph.onnx_name(n) for n in graph.inputs] == ["x", "unused"]
    verify(graph, dace_validation=True)


def test_eliminate_dead_nodes(folding_model):
    graph = import_model(folding_model)
    result = _apply(graph, "eliminate-dead-nodes")
    assert result.stats == {"removed_ops": 1, "removed_constants": 1}
    assert "Relu" not in _op_types(graph) and "unused" not in graph.constants
    assert not _apply(graph, "eliminate-dead-nodes").modified
    _assert_matches_onnxruntime(graph, folding_model, {"x": np.arange(8, dtype=F).reshape(2, 4)})


def test_eliminate_dead_nodes_negative(helpers):
    graph = import_model(helpers.load_example("mlp").build_model())
    before = print_graph(graph)
    assert not _apply(graph, "eliminate-dead-nodes").modified
    assert print_graph(graph) == before


def test_fold_shape_inputs_removes_the_shape_subgraph(helpers, rng):
    model = helpers.load_example("transformer").build_model()
    graph = import_model(model)
    assert {"Shape", "Gather", "Concat"} <= set(_op_types(graph))
    result = _apply(graph, "fold-shape-inputs")
    assert result.stats["folded_inputs"] == 6  # 4 Reshape shapes + 2 Unsqueeze axes
    reshape = next(n for n in graph.op_nodes() if n.label == "q.heads")
    assert graph.node_inputs(reshape) == ["q_out", None]
    assert list(reshape.static_input(1)) == [reshape.static_input(1)[0], 16, 4, 16]
    assert str(reshape.static_input(1)[0]) == "batch"
    _apply(graph, "eliminate-dead-nodes")
    assert not {"Shape", "Gather", "Concat"} & set(_op_types(graph))
    assert "  q_heads = Reshape(q_out) : f32[batch,16,4,16]\n" in print_graph(graph)
    assert not _apply(graph, "fold-shape-inputs").modified
    feeds = {"x": rng.standard_normal((2, 16, 64)).astype(F), "mask": rng.integers(0, 2, (2, 16))}
    _assert_matches_onnxruntime(graph, model, feeds)


def test_fold_shape_inputs_negative(helpers):
    # A constant Expand shape folds; a runtime one cannot even be imported (its output shape is unknown).
    model = helpers.make_model([helper.make_node("Expand", ["x", "s"], ["y"], name="ex")],
                               [("x", F, [1, 3])], [("y", F, [2, 3])], {"s": np.array([2, 1], I)})
    graph = import_model(model)
    result = _apply(graph, "fold-shape-inputs")
    assert result.modified  # a constant shape folds
    model.graph.initializer.pop()
    model.graph.input.append(helper.make_tensor_value_info("s2", 7, [2]))
    model.graph.node[0].input[1] = "s2"
    with pytest.raises(ShapeInferenceError, match="must be known at compile time"):
        import_model(model)


def test_fold_shape_inputs_leaves_data_inputs_connected(helpers, rng):
    # Pow's constant exponent is data, not a shape: it stays an input (codegen may still specialise on it).
    model = helpers.make_model([helper.make_node("Pow", ["x", "e"], ["y"], name="pow")], [("x", F, ["N", 3])],
                               [("y", F, ["N", 3])], {"e": np.array(2.0, F)})
    graph = import_model(model)
    result = _apply(graph, "fold-shape-inputs")
    assert not result.modified
    assert graph.node_inputs(graph.op_nodes()[0]) == ["x", "e"]
    _assert_matches_onnxruntime(graph, model, {"x": np.abs(rng.standard_normal((2, 3))).astype(F)})


@pytest.mark.compiled
@pytest.mark.parametrize("example", ["transformer", "cnn"])
def test_o1_keeps_the_numbers(helpers, example):
    module = helpers.load_example(example)
    model = module.build_model()
    feeds = [helpers.load_example("_compare").random_feeds(module.INPUTS, batch) for batch in (1, 3)]
    o0 = helpers.check_against_ort(model, feeds, passes="O0")
    o1 = helpers.check_against_ort(model, feeds, passes="O1")
    for feed in feeds:
        np.testing.assert_allclose(o0(**feed)[0], o1(**feed)[0], rtol=1e-5, atol=1e-5)
    assert len(o1.graph.op_nodes()) < len(o0.graph.op_nodes()) or example == "cnn"


def test_folded_model_compiles_and_matches(helpers, folding_model, rng):
    helpers.check_against_ort(folding_model, [{"x": rng.standard_normal((n, 4)).astype(F)} for n in (1, 4)])


def test_o1_is_idempotent(helpers):
    graph = import_model(helpers.load_example("transformer").build_model())
    run_pipeline(graph, "O1")
    assert not any(r.result.modified for r in run_pipeline(graph, "O1"))
