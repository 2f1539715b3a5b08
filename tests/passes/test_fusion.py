"""The O2 fusion passes: for each, the structure it produces (the printed IR), its meaning (the rewritten graph run
by the numpy references, and compiled, against ONNX Runtime at two shapes), a negative case where it must not
fire (and says why with --explain), and idempotence (a second run changes nothing)."""
from __future__ import annotations

import pathlib
import re

import numpy as np
import pytest
import onnx
from onnx import helper, numpy_helper

from sdflow.frontends.onnx import import_model
from sdflow.ir import interpret, print_graph, verify
from sdflow.ort import run_onnxruntime
from sdflow.passes import PassContext, parse_pipeline, run_pipeline

F = np.float32


def _optimized(model, spec):
    graph = import_model(model)
    records = run_pipeline(graph, "O1," + spec, ctx=PassContext(explain=True))
    return graph, records[-1].result


def _ops(graph):
    return [getattr(n, "kernel", "") or n.op_type for n in graph.op_nodes()]


def _assert_meaning(graph, model, feeds):
    for name, expected in run_onnxruntime(model, feeds).items():
        np.testing.assert_allclose(interpret(graph, feeds)[name], expected, rtol=1e-4, atol=1e-5, err_msg=name)


def _assert_idempotent(graph, spec):
    (pass_, ) = parse_pipeline(spec)
    assert not pass_.apply(graph, PassContext()).modified
    verify(graph)


def _gelu_nodes(x, out):
    """GELU as exporters write it: x * 0.5 * (1 + erf(x / sqrt 2))."""
    return [helper.make_node("Div", [x, "sqrt2"], [f"{out}_d"]), helper.make_node("Erf", [f"{out}_d"], [f"{out}_e"]),
            helper.make_node("Add", [f"{out}_e", "one"], [f"{out}_p"]),
            helper.make_node("Mul", [x, f"{out}_p"], [f"{out}_m"]),
            helper.make_node("Mul", [f"{out}_m", "half"], [out])]


GELU_CONSTANTS = {"sqrt2": np.array(np.sqrt(2), F), "one": np.array(1, F), "half": np.array(0.5, F)}


@pytest.fixture
def mlp(helpers, rng):
    """y = GELU(x @ W1 + b1) @ W2 + b2 + x  (the FFN of a transformer layer)."""
    nodes = [helper.make_node("MatMul", ["x", "w1"], ["h"]), helper.make_node("Add", ["b1", "h"], ["hb"]),
             *_gelu_nodes("hb", "g"), helper.make_node("MatMul", ["g", "w2"], ["o"]),
             helper.make_node("Add", ["o", "b2"], ["ob"]), helper.make_node("Add", ["ob", "x"], ["y"])]
    weights = {"w1": rng.standard_normal((32, 64)).astype(F) / 6, "b1": rng.standard_normal(64).astype(F),
               "w2": rng.standard_normal((64, 32)).astype(F) / 8, "b2": rng.standard_normal(32).astype(F),
               **GELU_CONSTANTS}
    return helpers.make_model(nodes, [("x", F, ["batch", "seq", 32])], [("y", F, ["batch", "seq", 32])], weights)


def _feeds(rng, shapes):
    return [{name: rng.standard_normal(shape).astype(F) for name, shape in feed.items()} for feed in shapes]


def test_fuse_elementwise_makes_one_kernel_of_the_gelu_chain(mlp, rng, helpers):
    graph, result = _optimized(mlp, "fuse-elementwise")
    assert _ops(graph) == ["MatMul", "Add+Div+Erf+Add+Mul+Mul", "MatMul", "Add+Add"]
    assert result.stats == {"fused_kernels": 2, "fused_ops": 8}
    assert "y = Fused(o, b2, x) {kernel='Add+Add'} : f32[batch,seq,32]" in print_graph(graph)
    _assert_meaning(graph, mlp, _feeds(rng, [{"x": (2, 5, 32)}])[0])
    _assert_idempotent(graph, "fuse-elementwise")
    helpers.check_against_ort(mlp, _feeds(rng, [{"x": (2, 5, 32)}, {"x": (1, 3, 32)}]),
                              passes="O1,fuse-elementwise")


def test_fuse_elementwise_keeps_apart_outputs_of_different_shapes(helpers):
    """Exp(s) [n, 1] is a graph output and so is x + Exp(s) [n, 4]: one map cannot write both shapes."""
    nodes = [helper.make_node("Exp", ["s"], ["e"]), helper.make_node("Add", ["x", "e"], ["y"])]
    model = helpers.make_model(nodes, [("x", F, ["n", 4]), ("s", F, ["n", 1])], [("y", F, ["n", 4]), ("e", F, ["n", 1])])
    graph, result = _optimized(model, "fuse-elementwise")
    assert not result.modified and _ops(graph) == ["Exp", "Add"]
    assert "different shapes" in result.notes[0]


def test_fuse_elementwise_never_makes_a_cycle(helpers):
    """Relu(x) feeds a ReduceSum whose Exp comes back into the Add: Relu and Add cannot be one kernel."""
    nodes = [helper.make_node("Relu", ["x"], ["r"]), helper.make_node("ReduceSum", ["r"], ["s"], keepdims=1),
             helper.make_node("Exp", ["s"], ["e"]), helper.make_node("Add", ["r", "e"], ["y"])]
    model = helpers.make_model(nodes, [("x", F, ["n", 4])], [("y", F, ["n", 4])], opset=13)
    graph, result = _optimized(model, "fuse-elementwise")
    assert _ops(graph) == ["Relu", "ReduceSum", "Exp+Add"]
    assert "a path through other ops" in result.notes[0]


def test_fuse_gemm_epilogue_absorbs_bias_gelu_and_residual(mlp, rng, helpers):
    graph, result = _optimized(mlp, "fuse-elementwise,fuse-gemm-epilogue")
    assert _ops(graph) == ["MatMul+Add+Div+Erf+Add+Mul+Mul", "MatMul+Add+Add"]
    assert result.stats == {"fused_gemms": 2, "epilogue_ops": 8}
    _assert_meaning(graph, mlp, _feeds(rng, [{"x": (2, 5, 32)}])[0])
    _assert_idempotent(graph, "fuse-gemm-epilogue")
    helpers.check_against_ort(mlp, _feeds(rng, [{"x": (2, 5, 32)}, {"x": (1, 7, 32)}]),
                              passes="O1,fuse-elementwise,fuse-gemm-epilogue")


def test_fuse_gemm_epilogue_declines_a_product_read_twice(helpers, rng):
    nodes = [helper.make_node("MatMul", ["x", "w"], ["h"]), helper.make_node("Relu", ["h"], ["r"]),
             helper.make_node("Add", ["h", "r"], ["y"])]
    model = helpers.make_model(nodes, [("x", F, ["n", 8])], [("y", F, ["n", 8])],
                               {"w": rng.standard_normal((8, 8)).astype(F)})
    graph, result = _optimized(model, "fuse-gemm-epilogue")
    assert not result.modified and _ops(graph) == ["MatMul", "Relu", "Add"]
    assert "its product is read by" in result.notes[0]


@pytest.fixture
def residual_block(helpers, rng):
    """ResNet's and MobileNetV2's patterns: Conv -> Add(residual) -> Relu, a depthwise Conv -> Clip(0, 6),
    and a strided 3x3 Conv -> Relu (im2col), over images of any size."""
    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1]),
             helper.make_node("Add", ["c1", "x"], ["s"]), helper.make_node("Relu", ["s"], ["r"]),
             helper.make_node("Conv", ["r", "wd", "bd"], ["c2"], pads=[1, 1, 1, 1], group=8),
             helper.make_node("Clip", ["c2", "zero", "six"], ["y"]),
             helper.make_node("Conv", ["y", "w3"], ["c3"], pads=[1, 1, 1, 1], strides=[2, 2]),
             helper.make_node("Relu", ["c3"], ["z"])]
    weights = {"w1": rng.standard_normal((8, 8, 3, 3)).astype(F) / 8, "b1": rng.standard_normal(8).astype(F),
               "wd": rng.standard_normal((8, 1, 3, 3)).astype(F), "bd": rng.standard_normal(8).astype(F),
               "w3": rng.standard_normal((4, 8, 3, 3)).astype(F) / 8,
               "zero": np.array(0, F), "six": np.array(6, F)}
    return helpers.make_model(nodes, [("x", F, ["n", 8, "h", "w"])], [("z", F, ["n", 4, "oh", "ow"])], weights)


def test_fuse_conv_epilogue_absorbs_residual_and_activations(residual_block, rng, helpers):
    graph, result = _optimized(residual_block, "fuse-elementwise,fuse-conv-epilogue")
    assert _ops(graph) == ["Conv+Add+Relu", "Conv+Clip", "Conv+Relu"]
    assert result.stats == {"fused_convs": 3, "epilogue_ops": 4}
    assert "r = Fused(x, w1, b1) {kernel='Conv+Add+Relu'}" in print_graph(graph)
    _assert_meaning(graph, residual_block, _feeds(rng, [{"x": (2, 8, 9, 10)}])[0])
    _assert_idempotent(graph, "fuse-conv-epilogue")
    # Dynamic image sizes: the strided conv's output dims are floor expressions of h and w.
    for passes in ("O1", "O2"):  # unfused and fused
        helpers.check_against_ort(residual_block, _feeds(rng, [{"x": (2, 8, 9, 10)}, {"x": (1, 8, 16, 7)}]),
                                  passes=passes)


def test_fuse_conv_epilogue_declines_a_row_broadcast(helpers, rng):
    """An input that varies along the rows of the plane only cannot be indexed by the plane loop."""
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"]), helper.make_node("Add", ["c", "row"], ["y"])]
    model = helpers.make_model(nodes, [("x", F, ["n", 2, 5, 5]), ("row", F, [5, 1])], [("y", F, ["n", 3, 5, 5])],
                               {"w": rng.standard_normal((3, 2, 1, 1)).astype(F)})
    graph, result = _optimized(model, "fuse-conv-epilogue")
    assert not result.modified and _ops(graph) == ["Conv", "Add"]
    assert "broadcasts over part of the plane" in result.notes[0]


@pytest.fixture
def inverted_residuals(helpers, rng):
    """MobileNetV2's blocks: a 1x1 expansion -> Clip(0, 6) -> depthwise 3x3 -> Clip -> 1x1 projection + residual;
    and a bare 1x1 expansion -> a stride-2 depthwise convolution with uneven pads and two outputs per channel."""
    nodes = [helper.make_node("Conv", ["x", "we", "be"], ["e0"]), helper.make_node("Clip", ["e0", "zero", "six"], ["e"]),
             helper.make_node("Conv", ["e", "wd", "bd"], ["d0"], pads=[1, 1, 1, 1], group=48),
             helper.make_node("Clip", ["d0", "zero", "six"], ["d"]),
             helper.make_node("Conv", ["d", "wp", "bp"], ["p"]), helper.make_node("Add", ["p", "x"], ["y"]),
             helper.make_node("Conv", ["y", "wf"], ["f"]),
             helper.make_node("Conv", ["f", "wg"], ["z"], pads=[1, 0, 1, 2], strides=[2, 2], group=24)]
    weights = {"we": rng.standard_normal((48, 16, 1, 1)).astype(F) / 4, "be": rng.standard_normal(48).astype(F),
               "wd": rng.standard_normal((48, 1, 3, 3)).astype(F) / 3, "bd": rng.standard_normal(48).astype(F),
               "wp": rng.standard_normal((16, 48, 1, 1)).astype(F) / 7, "bp": rng.standard_normal(16).astype(F),
               "wf": rng.standard_normal((24, 16, 1, 1)).astype(F) / 4, "wg": rng.standard_normal((48, 1, 3, 3)).astype(F),
               "zero": np.array(0, F), "six": np.array(6, F)}
    return helpers.make_model(nodes, [("x", F, ["n", 16, 13, 19])], [("z", F, ["n", 48, 7, 10])], weights)


def test_fuse_conv_depthwise_keeps_the_expanded_tensor_in_the_kernel(inverted_residuals, rng, helpers, monkeypatch):
    """Both 1x1 -> depthwise pairs become one kernel each; the expanded tensors are gone from the graph. With the
    direct kernel's packed weights (AVX-512) they compute 8 expanded planes at a time into a per-thread buffer;
    without (the option direct_conv=false) the two convolutions run one after the other through a scratch tensor."""
    graph, result = _optimized(inverted_residuals, "fuse-elementwise,fuse-conv-epilogue,fuse-conv-depthwise")
    assert _ops(graph) == ["Conv+Clip+Conv+Clip", "Conv+Add", "Conv+Conv"]
    assert result.stats == {"fused_blocks": 2}
    assert not {"e", "e0", "d0", "f"} & set(graph.sdfg.arrays)
    _assert_meaning(graph, inverted_residuals, _feeds(rng, [{"x": (2, 16, 13, 19)}])[0])
    _assert_idempotent(graph, "fuse-conv-depthwise")
    from sdflow.codegen import threads
    for direct in ("1", "0"):
        compiled = helpers.check_against_ort(
            inverted_residuals, _feeds(rng, [{"x": (1, 16, 13, 19)}, {"x": (3, 16, 13, 19)}]), passes="O2",
            options={"direct_conv": direct})
        code = "".join(p.read_text() for p in compiled.build_folder.glob("src/cpu/*.cpp"))
        buffered = 2 if direct == "1" and threads.has_avx512() else 0
        assert (code.count("sdflow_kernels::conv_pointwise_depthwise("),
                code.count("sdflow_kernels::scratch_floats(")) == (buffered, 2 - buffered)
        pairs = [n.implementation.split("+") for n in compiled.graph.op_nodes()
                 if n.op_type == "Fused" and n.parsed.kind == "conv_depthwise"]
        assert len(pairs) == 2 and all(len(p) == 2 and p[1].startswith("depthwise-") for p in pairs)
        assert [p[0] == "direct" for p in pairs] == [bool(buffered)] * 2


def test_fuse_conv_depthwise_declines(helpers, rng):
    """A 1x1 output read twice, one read by a full 3x3 convolution, a stride-1 depthwise convolution over rows
    wider than 32 (faster alone, over a padded plane)."""
    nodes = [helper.make_node("Conv", ["x", "w1"], ["a"]), helper.make_node("Conv", ["a", "wd"], ["b"], group=8),
             helper.make_node("Relu", ["a"], ["r"]),
             helper.make_node("Conv", ["x", "w1"], ["c"]), helper.make_node("Conv", ["c", "w3"], ["d"]),
             helper.make_node("Conv", ["u", "w1"], ["e"]),
             helper.make_node("Conv", ["e", "wd"], ["f"], pads=[1, 1, 1, 1], group=8)]
    model = helpers.make_model(
        nodes, [("x", F, ["n", 4, 6, 6]), ("u", F, ["n", 4, 3, 40])],
        [("b", F, ["n", 8, 4, 4]), ("r", F, ["n", 8, 6, 6]), ("d", F, ["n", 2, 4, 4]), ("f", F, ["n", 8, 3, 40])],
        {"w1": rng.standard_normal((8, 4, 1, 1)).astype(F), "wd": rng.standard_normal((8, 1, 3, 3)).astype(F),
         "w3": rng.standard_normal((2, 8, 3, 3)).astype(F)})
    graph, result = _optimized(model, "fuse-conv-depthwise")
    assert not result.modified and _ops(graph) == ["Conv", "Conv", "Relu", "Conv", "Conv", "Conv", "Conv"]
    assert [n.split(", ", 1)[1] for n in result.notes] == [
        "its output is read by more than one op, or is a graph output",
        "Conv_4 is not a depthwise convolution of it",
        "Conv_6's rows are done faster over a padded plane (stride 1, 40 wide)"]


@pytest.fixture
def layernorm_softmax(helpers, rng):
    """A decomposed LayerNorm after bias + residual adds, and a scaled, masked softmax."""
    n = 48
    nodes = [helper.make_node("Add", ["x", "b"], ["h"]), helper.make_node("Add", ["h", "r"], ["h2"]),
             helper.make_node("ReduceMean", ["h2", "axes"], ["mu"]), helper.make_node("Sub", ["h2", "mu"], ["d"]),
             helper.make_node("Pow", ["d", "two"], ["sq"]), helper.make_node("ReduceMean", ["sq", "axes"], ["var"]),
             helper.make_node("Add", ["var", "eps"], ["ve"]), helper.make_node("Sqrt", ["ve"], ["sd"]),
             helper.make_node("Div", ["d", "sd"], ["nrm"]), helper.make_node("Mul", ["nrm", "gamma"], ["ng"]),
             helper.make_node("Add", ["ng", "beta"], ["y"]),
             helper.make_node("Div", ["q", "scale"], ["qs"]), helper.make_node("Add", ["qs", "mask"], ["qm"]),
             helper.make_node("Softmax", ["qm"], ["p"], axis=-1)]
    constants = {"b": rng.standard_normal(n).astype(F), "gamma": rng.uniform(0.5, 1.5, n).astype(F),
                 "beta": rng.standard_normal(n).astype(F), "axes": np.array([-1]), "two": np.array(2, F),
                 "eps": np.array(1e-5, F), "scale": np.array(8, F)}
    return helpers.make_model(nodes, [("x", F, ["batch", "seq", n]), ("r", F, ["batch", "seq", n]),
                                      ("q", F, ["batch", 2, "seq", "seq"]), ("mask", F, ["batch", 1, 1, "seq"])],
                              [("y", F, ["batch", "seq", n]), ("p", F, ["batch", 2, "seq", "seq"])], constants,
                              opset=18)


def _norm_feeds(rng, batch, seq):
    return {"x": rng.standard_normal((batch, seq, 48)).astype(F), "r": rng.standard_normal((batch, seq, 48)).astype(F),
            "q": rng.standard_normal((batch, 2, seq, seq)).astype(F),
            "mask": rng.standard_normal((batch, 1, 1, seq)).astype(F)}


def test_fuse_normalization_recognises_layernorm_and_fuses_bdrln_and_sm(layernorm_softmax, rng, helpers):
    graph, result = _optimized(layernorm_softmax, "fuse-normalization")
    assert sorted(_ops(graph)) == ["Add+Add+LayerNormalization", "Div+Add+Softmax"]
    assert result.stats == {"layernorms_recognised": 1, "bias_residual_layernorms": 1, "scaled_masked_softmaxes": 1}
    _assert_meaning(graph, layernorm_softmax, _norm_feeds(rng, 2, 5))
    _assert_idempotent(graph, "fuse-normalization")
    helpers.check_against_ort(layernorm_softmax, [_norm_feeds(rng, 2, 5), _norm_feeds(rng, 1, 9)],
                              passes="O1,fuse-normalization")


def test_fuse_normalization_leaves_a_layernorm_whose_input_is_reused(helpers, rng):
    """The residual sum is also a graph output: absorbing it would lose it; and a mean over axis 0 is no
    LayerNorm."""
    nodes = [helper.make_node("Add", ["x", "r"], ["s"]),
             helper.make_node("LayerNormalization", ["s", "g"], ["y"], axis=-1),
             helper.make_node("ReduceMean", ["x"], ["m"], axes=[0], keepdims=1), helper.make_node("Sub", ["x", "m"], ["c"])]
    model = helpers.make_model(nodes, [("x", F, ["n", 8]), ("r", F, ["n", 8])],
                               [("y", F, ["n", 8]), ("s", F, ["n", 8]), ("c", F, ["n", 8])],
                               {"g": np.ones(8, F)})
    graph, result = _optimized(model, "fuse-normalization")
    assert not result.modified and _ops(graph) == ["Add", "LayerNormalization", "ReduceMean", "Sub"]
    assert any("not a LayerNorm" in note for note in result.notes)


@pytest.fixture
def attention_layer(helpers):
    return helpers.load_example("transformer")


def _bert_like_attention(helpers, rng, heads=2, size=8, seq="seq"):
    """x -> Q/K/V projections with biases -> heads -> scaled scores + additive mask -> softmax -> context."""
    model_dim = heads * size
    nodes = []
    for name in "qkv":
        nodes += [helper.make_node("MatMul", ["x", f"w{name}"], [f"{name}m"]),
                  helper.make_node("Add", [f"{name}m", f"b{name}"], [f"{name}b"]),
                  helper.make_node("Reshape", [f"{name}b", "heads"], [f"{name}h"])]
    nodes += [helper.make_node("Transpose", ["qh"], ["qt"], perm=[0, 2, 1, 3]),
              helper.make_node("Transpose", ["kh"], ["kt"], perm=[0, 2, 3, 1]),
              helper.make_node("Transpose", ["vh"], ["vt"], perm=[0, 2, 1, 3]),
              helper.make_node("MatMul", ["qt", "kt"], ["s"]), helper.make_node("Mul", ["s", "scale"], ["ss"]),
              helper.make_node("Add", ["ss", "mask"], ["sm"]), helper.make_node("Softmax", ["sm"], ["p"], axis=-1),
              helper.make_node("MatMul", ["p", "vt"], ["c"]),
              helper.make_node("Transpose", ["c"], ["ct"], perm=[0, 2, 1, 3]),
              helper.make_node("Reshape", ["ct", "merged"], ["y"])]
    constants = {f"w{n}": rng.standard_normal((model_dim, model_dim)).astype(F) / 4 for n in "qkv"}
    constants.update({f"b{n}": rng.standard_normal(model_dim).astype(F) for n in "qkv"})
    constants.update(heads=np.array([0, 0, heads, size]), merged=np.array([0, 0, model_dim]),
                     scale=np.array(1 / np.sqrt(size), F))
    return helpers.make_model(nodes, [("x", F, ["batch", seq, model_dim]), ("mask", F, ["batch", 1, 1, seq])],
                              [("y", F, ["batch", seq, model_dim])], constants)


def _attention_feeds(rng, batch, seq):
    mask = np.where(rng.random((batch, 1, 1, seq)) < 0.2, -1e4, 0).astype(F)
    return {"x": rng.standard_normal((batch, seq, 16)).astype(F), "mask": mask}


def test_fuse_attention_then_fold_layout_reads_and_writes_heads_in_place(helpers, rng):
    model = _bert_like_attention(helpers, rng)
    graph, result = _optimized(model, "fuse-attention")
    assert result.stats == {"attentions": 1, "merged_projections": 1}
    assert sorted(_ops(graph)) == ["Attention", "MatMul+Add+Split"] + ["Reshape"] * 4 + ["Transpose"] * 4
    _assert_meaning(graph, model, _attention_feeds(rng, 2, 5))
    _assert_idempotent(graph, "fuse-attention")
    run_pipeline(graph, "fold-layout")
    assert _ops(graph) == ["MatMul+Add+Split", "Attention"]
    assert "y = Attention(qb, kb, vb, mask) {kv_num_heads=2, q_num_heads=2, scale=0.35355338" in print_graph(graph)
    _assert_meaning(graph, model, _attention_feeds(rng, 2, 5))
    _assert_idempotent(graph, "fold-layout")
    helpers.check_against_ort(model, [_attention_feeds(rng, 2, 5), _attention_feeds(rng, 1, 11)],
                              passes="O1,fuse-attention,fold-layout")


def _hf_mask_attention(helpers, rng, scores_side_mask=False):
    """The block as Hugging Face's legacy BERT export writes the mask: an int64 attention_mask [batch, seq] turned
    into (1 - mask) * -10000 ([batch, 1, 1, seq]: Unsqueeze, Cast, Sub, Mul by a scalar) and added to the scaled
    scores. ``scores_side_mask``: the scores get a second product added instead (Q . Q^T, not a mask)."""
    model = _bert_like_attention(helpers, rng)
    graph = model.graph
    graph.input.pop()  # the float mask input
    graph.input.append(helper.make_tensor_value_info("mask_ids", onnx.TensorProto.INT64, ["batch", "seq"]))
    if scores_side_mask:
        extra = [helper.make_node("Transpose", ["qh"], ["qt2"], perm=[0, 2, 3, 1]),
                 helper.make_node("MatMul", ["qt", "qt2"], ["qq"]), helper.make_node("Mul", ["qq", "scale"], ["mask"]),
                 helper.make_node("Cast", ["mask_ids"], ["unused"], to=onnx.TensorProto.FLOAT)]
    else:
        extra = [helper.make_node("Unsqueeze", ["mask_ids", "mask_axes"], ["mu"]),
                 helper.make_node("Cast", ["mu"], ["mf"], to=onnx.TensorProto.FLOAT),
                 helper.make_node("Sub", ["one", "mf"], ["inverted"]),
                 helper.make_node("Mul", ["inverted", "large_negative"], ["mask"])]
        graph.initializer.extend([numpy_helper.from_array(np.array([1, 2], np.int64), "mask_axes"),
                                  numpy_helper.from_array(np.array(1.0, F), "one"),
                                  numpy_helper.from_array(np.array(-10000.0, F), "large_negative")])
    position = [n.output[0] for n in graph.node].index("s")
    for node in reversed(extra):
        graph.node.insert(position, node)
    onnx.checker.check_model(model)
    return model


def test_fuse_attention_takes_hugging_face_masks(helpers, rng):
    """(1 - mask) * -10000 is a Mul by a scalar, but of no product: it is the mask side of the Add (the pattern
    used to decline it as "added to something that is not a mask"). Structure, meaning and ONNX Runtime."""
    model = _hf_mask_attention(helpers, rng)
    graph, result = _optimized(model, "fuse-attention")
    assert result.stats["attentions"] == 1
    assert "Attention" in _ops(graph)
    feeds = [{"x": rng.standard_normal((b, s, 16)).astype(F), "mask_ids": (rng.random((b, s)) < 0.8).astype(np.int64)}
             for b, s in ((2, 5), (1, 11))]
    _assert_meaning(graph, model, feeds[0])
    helpers.check_against_ort(model, feeds, passes="O2")


def test_fuse_attention_declines_a_second_product_added_to_the_scores(helpers, rng):
    """Both sides of the Add are scaled products: neither is a mask."""
    graph, result = _optimized(_hf_mask_attention(helpers, rng, scores_side_mask=True), "fuse-attention")
    assert result.stats["attentions"] == 0
    assert any("not a mask" in note for note in result.notes)


def _sdpa_attention(helpers, rng, k_read_twice=False):
    """The block as PyTorch exports scaled_dot_product_attention: Q and Kᵀ each multiplied by sqrt(scale) before
    the product, no scaling after it. ``k_read_twice``: the scaled Kᵀ is also an output (cannot be folded)."""
    model = _bert_like_attention(helpers, rng)
    graph = model.graph
    nodes = list(graph.node)
    index = next(i for i, n in enumerate(nodes) if list(n.input) == ["qt", "kt"])
    nodes[index].input[:] = ["qs", "ks"]
    nodes[index:index] = [helper.make_node("Mul", ["qt", "root_scale"], ["qs"]),
                          helper.make_node("Mul", ["kt", "root_scale"], ["ks"])]
    nodes = [n for n in nodes if list(n.input) != ["s", "scale"]]
    for node in nodes:
        if list(node.input) == ["ss", "mask"]:
            node.input[0] = "s"
    del graph.node[:]
    graph.node.extend(nodes)
    graph.initializer.append(numpy_helper.from_array(np.array(8 ** -0.25, F), "root_scale"))
    if k_read_twice:
        graph.output.append(helper.make_tensor_value_info("ks", onnx.TensorProto.FLOAT, ["batch", 2, 8, "seq"]))
    onnx.checker.check_model(model)
    return model


def test_fuse_attention_takes_pytorch_sdpa_scaling(helpers, rng):
    """Both scalings fold into the Attention op's scale (1/sqrt(8)); structure, meaning and ONNX Runtime."""
    model = _sdpa_attention(helpers, rng)
    graph, result = _optimized(model, "fuse-attention")
    assert result.stats["attentions"] == 1
    assert "Mul" not in _ops(graph) and "scale=0.35355" in print_graph(graph)
    _assert_meaning(graph, model, _attention_feeds(rng, 2, 5))
    helpers.check_against_ort(model, [_attention_feeds(rng, 2, 5), _attention_feeds(rng, 1, 11)], passes="O2")


def _sdpa_nan_rule_attention(helpers, rng, probabilities_read_twice=False):
    """The block as PyTorch's exporter writes scaled_dot_product_attention with a boolean mask (BERT, RoBERTa,
    DistilBERT, XLM-R exports): the mask as Where(mask, 0, -inf) added to the scores, and the probabilities passed
    through Where(IsNaN(P), 0, P), so that a fully masked row (softmax of all -inf: NaN) gives zeros."""
    model = _sdpa_attention(helpers, rng)
    graph = model.graph
    graph.input.pop()  # the float mask input
    graph.input.append(helper.make_tensor_value_info("allowed", onnx.TensorProto.BOOL, ["batch", 1, 1, "seq"]))
    nodes = list(graph.node)
    softmax = next(i for i, n in enumerate(nodes) if n.op_type == "Softmax")
    nodes[softmax].output[0] = "p_raw"
    nodes[softmax + 1:softmax + 1] = [helper.make_node("IsNaN", ["p_raw"], ["p_nan"]),
                                      helper.make_node("Where", ["p_nan", "zero", "p_raw"], ["p"])]
    nodes[0:0] = [helper.make_node("Where", ["allowed", "zero", "minus_inf"], ["mask"])]
    del graph.node[:]
    graph.node.extend(nodes)
    graph.initializer.extend([numpy_helper.from_array(np.array(0, F), "zero"),
                              numpy_helper.from_array(np.array(-np.inf, F), "minus_inf")])
    if probabilities_read_twice:
        graph.output.append(helper.make_tensor_value_info("p_raw", onnx.TensorProto.FLOAT, ["batch", 2, "seq", "seq"]))
    onnx.checker.check_model(model)
    return model


def test_fuse_attention_takes_pytorch_sdpa_nan_rule(helpers, rng):
    """Where(IsNaN(P), 0, P) after the softmax becomes the Attention op's nan_probabilities_to_zero; a sample whose
    every key is masked gives the zeros the rule gives (ONNX Runtime runs the unfused graph), the others the
    attention itself. Structure, the fused op's numpy reference, and the compiled model against ONNX Runtime (NaN
    scores: tests/codegen/kernels/attention_test.cpp)."""
    model = _sdpa_nan_rule_attention(helpers, rng)
    graph, result = _optimized(model, "fuse-attention")
    assert result.stats["attentions"] == 1
    ops = _ops(graph)
    assert "IsNaN" not in ops and "Softmax" not in ops and ops.count("Where") == 1  # (the mask's Where stays)
    assert "nan_probabilities_to_zero=1" in print_graph(graph)

    def feeds(batch, seq):
        allowed = rng.random((batch, 1, 1, seq)) < 0.7
        allowed[0] = False  # the first sample attends to nothing
        return {"x": rng.standard_normal((batch, seq, 16)).astype(F), "allowed": allowed}
    _assert_meaning(graph, model, feeds(2, 5))
    compiled = helpers.check_against_ort(model, [feeds(2, 5), feeds(3, 11)], passes="O2")
    assert "Attention" in [n.op_type for n in compiled.graph.op_nodes()]
    assert not np.isnan(compiled(**feeds(2, 5)).as_dict()["y"]).any()


def test_fuse_attention_declines_the_nan_rule_when_the_probabilities_are_read_elsewhere(helpers, rng):
    graph, result = _optimized(_sdpa_nan_rule_attention(helpers, rng, probabilities_read_twice=True),
                               "fuse-attention")
    assert result.stats["attentions"] == 0
    assert any("probabilities are read by other ops" in note for note in result.notes)


def _dynamo_key_transpose_attention(helpers, rng, flat_read_twice=False):
    """``_sdpa_nan_rule_attention`` with Kᵀ as PyTorch's dynamo exporter writes it; ``flat_read_twice``: the
    flattened keys [B * H, S, D] are also a graph output (the chain cannot go)."""
    model = _sdpa_nan_rule_attention(helpers, rng)
    graph = model.graph
    nodes = list(graph.node)
    index = next(i for i, n in enumerate(nodes) if n.op_type == "Transpose" and list(n.input) == ["kh"])
    nodes[index] = helper.make_node("Transpose", ["kh"], ["k4"], perm=[0, 2, 1, 3])
    nodes[index + 1:index + 1] = [
        helper.make_node("Shape", ["k4"], ["k_shape"]),
        helper.make_node("Slice", ["k_shape", "i0", "i2"], ["k_bh"]),
        helper.make_node("Slice", ["k_shape", "i2", "i3"], ["k_s"]),
        helper.make_node("Slice", ["k_shape", "i3", "i4"], ["k_d"]),
        helper.make_node("Concat", ["minus_one", "k_s", "k_d"], ["flat_shape"], axis=0),
        helper.make_node("Concat", ["k_bh", "k_d", "k_s"], ["kt_shape"], axis=0),
        helper.make_node("Reshape", ["k4", "flat_shape"], ["k3"]),
        helper.make_node("Transpose", ["k3"], ["k3t"], perm=[0, 2, 1]),
        helper.make_node("Reshape", ["k3t", "kt_shape"], ["kt"])]
    del graph.node[:]
    graph.node.extend(nodes)
    graph.initializer.extend(numpy_helper.from_array(np.array([v], np.int64), name)
                             for name, v in (("i0", 0), ("i2", 2), ("i3", 3), ("i4", 4), ("minus_one", -1)))
    if flat_read_twice:
        graph.output.append(helper.make_tensor_value_info("k3", onnx.TensorProto.FLOAT, ["bh", "seq", 8]))
    onnx.checker.check_model(model)
    return model


def test_fuse_attention_takes_the_dynamo_exporters_key_transpose(helpers, rng):
    """PyTorch's dynamo exporter transposes [B, H, S, D] keys as Reshape to [B * H, S, D], Transpose (0, 2, 1) and
    Reshape to [B, H, D, S], with the shapes computed from Shape/Slice/Concat (Llama, Mistral, Qwen2, Gemma, Phi,
    GPT-J exports). fuse-attention reads that as Kᵀ; structure and ONNX Runtime at two sequence lengths."""
    model = _dynamo_key_transpose_attention(helpers, rng)
    _, result = _optimized(model, "fuse-attention")
    assert result.stats["attentions"] == 1, result.notes

    def feeds(batch, seq):
        return {"x": rng.standard_normal((batch, seq, 16)).astype(F),
                "allowed": rng.random((batch, 1, 1, seq)) < 0.7}
    compiled = helpers.check_against_ort(model, [feeds(2, 5), feeds(1, 11)], passes="O2")
    assert "Attention" in [n.op_type for n in compiled.graph.op_nodes()]


def test_fuse_attention_declines_a_dynamo_key_transpose_read_elsewhere(helpers, rng):
    graph, result = _optimized(_dynamo_key_transpose_attention(helpers, rng, flat_read_twice=True), "fuse-attention")
    assert result.stats["attentions"] == 0 and "Attention" not in _ops(graph)
    assert any("Kᵀ is not a transpose" in note for note in result.notes)


def test_fuse_attention_declines_a_scaled_key_read_elsewhere(helpers, rng):
    graph, result = _optimized(_sdpa_attention(helpers, rng, k_read_twice=True), "fuse-attention")
    assert result.stats["attentions"] == 0
    assert any("Kᵀ" in note for note in result.notes)


def test_fuse_attention_declines_a_where_masked_softmax(helpers):
    """The example block masks with Where(mask, -1e4, scores): not an additive mask, so no Attention op."""
    graph, result = _optimized(helpers.load_example("transformer").build_model(), "fuse-attention")
    assert result.stats["attentions"] == 0
    assert any("Where" in note for note in result.notes)


def _conv1d_mlp(helpers, rng, alpha=1.0):
    """GPT-2's MLP as its Conv1D exports (legacy and dynamo exporters): Reshape [B, S, 16] -> [B * S, 16], Gemm
    with a bias, Reshape back, GELU (tanh form), and a second Gemm by a transposed weight (transB = 1) with a [1, N]
    bias, then the residual add. ``alpha``: the first Gemm's (not 1: it stays a Gemm)."""
    nodes = [helper.make_node("Shape", ["x"], ["x_shape"]),
             helper.make_node("Slice", ["x_shape", "i0", "i2"], ["rows_shape"]),
             helper.make_node("Concat", ["rows_shape", "width"], ["out_shape"], axis=0),
             helper.make_node("Reshape", ["x", "flat"], ["x2"]),
             helper.make_node("Gemm", ["x2", "w1", "b1"], ["h2"], alpha=alpha),
             helper.make_node("Reshape", ["h2", "out_shape"], ["h"]),
             helper.make_node("Mul", ["h", "h"], ["h_sq"]), helper.make_node("Mul", ["h_sq", "h"], ["h_cube"]),
             helper.make_node("Mul", ["h_cube", "c0"], ["h_c"]), helper.make_node("Add", ["h", "h_c"], ["inner"]),
             helper.make_node("Mul", ["inner", "c1"], ["scaled"]), helper.make_node("Tanh", ["scaled"], ["t"]),
             helper.make_node("Add", ["t", "one"], ["t1"]), helper.make_node("Mul", ["h", "t1"], ["ht"]),
             helper.make_node("Mul", ["ht", "half"], ["g"]),
             helper.make_node("Reshape", ["g", "flat_wide"], ["g2"]),
             helper.make_node("Gemm", ["g2", "w2", "b2"], ["o2"], transB=1),
             helper.make_node("Reshape", ["o2", "x_shape"], ["o"]),
             helper.make_node("Add", ["o", "x"], ["y"])]
    constants = {"w1": rng.standard_normal((16, 32)).astype(F) / 4, "b1": rng.standard_normal(32).astype(F),
                 "w2": rng.standard_normal((16, 32)).astype(F) / 4, "b2": rng.standard_normal((1, 16)).astype(F),
                 "flat": np.array([-1, 16]), "flat_wide": np.array([-1, 32]), "width": np.array([32]),
                 "i0": np.array([0]), "i2": np.array([2]), "c0": np.array(0.044715, F),
                 "c1": np.array(np.sqrt(2 / np.pi), F), "one": np.array(1, F), "half": np.array(0.5, F)}
    return helpers.make_model(nodes, [("x", F, ["batch", "seq", 16])], [("y", F, ["batch", "seq", 16])], constants)


def test_gemm_to_matmul_lets_gpt2s_conv1d_take_its_epilogue(helpers, rng):
    """Both Gemms become MatMul + Add, and the Reshapes around them go (a MatMul takes the 3-D rows as they are);
    then the first product takes the bias and the GELU as its epilogue. Structure, meaning, idempotence and ONNX Runtime
    at two shapes."""
    model = _conv1d_mlp(helpers, rng)
    graph, result = _optimized(model, "gemm-to-matmul")
    assert result.stats == {"gemms": 2, "reshapes_removed": 4}
    assert "Gemm" not in _ops(graph) and "Reshape" not in _ops(graph) and _ops(graph).count("MatMul") == 2
    feeds = [{"x": rng.standard_normal(s).astype(F)} for s in ((2, 5, 16), (1, 9, 16))]
    _assert_meaning(graph, model, feeds[0])
    _assert_idempotent(graph, "gemm-to-matmul")
    run_pipeline(graph, "fuse-elementwise,fuse-gemm-epilogue")  # (the GELU is one element-wise kernel first)
    assert any(kernel.startswith("MatMul+Add+Mul") and "Tanh" in kernel for kernel in _ops(graph)), _ops(graph)
    _assert_meaning(graph, model, feeds[0])
    helpers.check_against_ort(model, feeds, passes="O2")


def test_gemm_to_matmul_declines_a_scaled_product(helpers, rng):
    graph, result = _optimized(_conv1d_mlp(helpers, rng, alpha=0.5), "gemm-to-matmul")
    assert result.stats["gemms"] == 1 and _ops(graph).count("Gemm") == 1
    assert any("alpha or beta is not 1" in note for note in result.notes)


def test_fold_layout_composes_transposes_and_drops_noop_reshapes(helpers, rng):
    nodes = [helper.make_node("Transpose", ["x"], ["a"], perm=[1, 0, 2]),
             helper.make_node("Transpose", ["a"], ["b"], perm=[1, 0, 2]),
             helper.make_node("Relu", ["b"], ["c"]), helper.make_node("Reshape", ["c", "shape"], ["d"]),
             helper.make_node("Transpose", ["d"], ["e"], perm=[2, 0, 1]),
             helper.make_node("Transpose", ["e"], ["y"], perm=[2, 0, 1])]
    model = helpers.make_model(nodes, [("x", F, [2, 3, 4])], [("y", F, [4, 2, 3])], {"shape": np.array([2, 3, 4])})
    graph, result = _optimized(model, "fold-layout")
    assert result.stats == {"attention_layouts": 0, "transposes_composed": 2, "reshapes_folded": 1}
    assert _ops(graph) == ["Relu", "Transpose"]
    _assert_meaning(graph, model, {"x": rng.standard_normal((2, 3, 4)).astype(F)})
    _assert_idempotent(graph, "fold-layout")


def test_o2_compiles_every_claimed_fusion_into_the_generated_code(helpers, rng):
    """Each fused kernel the graph (and `sdflow report`) names is a kernel of the generated C++."""
    import sdflow
    from sdflow.codegen.lowering.fused import marker
    model = helpers.load_example("transformer").build_model()
    compiled = helpers.check_against_ort(model, [{"x": rng.standard_normal((2, 16, 64)).astype(F),
                                                  "mask": np.ones((2, 16), np.int64)}], passes="O2")
    code = "".join(p.read_text() for p in pathlib.Path(compiled.build_folder).glob("src/cpu/*.cpp"))
    fused = [n for n in compiled.graph.op_nodes() if n.op_type == "Fused"]
    assert len(fused) >= 4
    for node in fused:
        assert marker(node.parsed) in code, node.kernel
    assert len(re.findall(r"// sdflow fused kernel", code)) >= len(fused)
    assert sdflow.optimize(sdflow.load(model), "O2").pass_records[-1].name == "eliminate-dead-nodes"


def test_fold_layout_keeps_what_others_read_and_shapes_it_cannot_know(helpers, rng):
    """The first Transpose's result is a graph output (composing would lose it); the second Reshape copies a dim
    (0) from its input, so it cannot read the first Reshape's input instead."""
    nodes = [helper.make_node("Transpose", ["x"], ["a"], perm=[1, 0, 2]),
             helper.make_node("Transpose", ["a"], ["b"], perm=[1, 0, 2]),
             helper.make_node("Reshape", ["b", "flat"], ["c"]), helper.make_node("Reshape", ["c", "keep"], ["y"])]
    model = helpers.make_model(nodes, [("x", F, [2, 3, 4])], [("y", F, [6, 2, 2]), ("a", F, [3, 2, 4])],
                               {"flat": np.array([6, 4]), "keep": np.array([0, 2, 2])})
    graph, result = _optimized(model, "fold-layout")
    assert not result.modified and _ops(graph) == ["Transpose", "Transpose", "Reshape", "Reshape"]
    assert any("copies input dims (0)" in note for note in result.notes)
    _assert_meaning(graph, model, {"x": rng.standard_normal((2, 3, 4)).astype(F)})
