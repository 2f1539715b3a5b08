"""quantize-dynamic-int8: products by constant weights become QuantizedMatMul (int8 weights, activations
quantized at run time); the compiled kernels (every form of qgemm.h, fused epilogues, Split blocks) compute what
the op's numpy reference defines, the result stays close to ONNX Runtime's float model, and the trained MiniLM
keeps its embeddings (cosine >= 0.99)."""
from __future__ import annotations

import numpy as np
import pytest
from onnx import helper

import sdflow
from sdflow.frontends.onnx import import_model
from sdflow.ir import PipelineError, interpret, lookup_op, evaluate_node
from sdflow.ort import run_onnxruntime
from sdflow.passes import PassContext, parse_pipeline, run_pipeline
from sdflow.passes.quantization.quantize_dynamic_int8 import quantize_weight_int8

F = np.float32


def _ffn(helpers, rng, k=64, hidden=96):
    return helpers.ffn_model(rng, k, hidden)


def _optimized(model, spec):
    graph = import_model(model)
    run_pipeline(graph, spec, ctx=PassContext(explain=True))
    return graph


def _relative(a, b):
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


@pytest.mark.parametrize("spec", ["O1,quantize-dynamic-int8{min_elements=0},O2",
                                  "O2,quantize-dynamic-int8{min_elements=0}",
                                  "O2,quantize-dynamic-int8{min_elements=0,per_row=false,reduce_range=false}",
                                  "O2,quantize-dynamic-int8{min_elements=0,per_channel=false}"])
def test_products_become_int8_with_their_epilogues_fused(helpers, rng, spec):
    model = _ffn(helpers, rng)
    graph = _optimized(model, spec)
    kernels = [getattr(n, "kernel", "") or n.op_type for n in graph.op_nodes()]
    assert kernels == ["QuantizedMatMul+Add+Relu", "QuantizedMatMul+Add"], kernels
    feeds = {"x": rng.standard_normal((2, 13, 64)).astype(F)}
    expected = run_onnxruntime(model, feeds)["y"]
    reference = interpret(graph, feeds)["y"]  # the ops' numpy references: what the quantized model means
    assert 1e-4 < _relative(reference, expected) < 0.02
    compiled = sdflow.compile(model, passes=spec)(**feeds)[0]
    np.testing.assert_allclose(compiled, reference, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("per_row, per_column, limit", [(True, True, 64), (False, False, 127), (True, False, 127)])
@pytest.mark.parametrize("rows, k, n", [(1, 1, 1), (7, 13, 17), (70, 100, 45)])
def test_the_kernel_computes_what_the_op_defines(helpers, rng, per_row, per_column, limit, rows, k, n):
    """One QuantizedMatMul of odd sizes (k not a multiple of 4, n not of 16) with a bias, compiled, against
    its numpy reference; an activation row of zeros and one with an outlier."""
    a = rng.standard_normal((rows, k)).astype(F)
    if rows > 2:
        a[1] = 0
        a[2, 0] = 50
    codes, scales = quantize_weight_int8(rng.standard_normal((k, n)).astype(F), per_column, limit)
    bias = rng.standard_normal(n).astype(F)
    node = lookup_op("ai.sdflow", "QuantizedMatMul", 1).node_class(
        "q", inputs=["A", "B", "b_scale", "bias"], outputs=["Y"], opset=1, per_row=int(per_row))
    expected = evaluate_node(node, [a, codes, scales, bias])[0]
    # Through the pass: a Gemm with a bias row and transB, the weight given as the float values the codes stand
    # for, so the pass finds the same codes and scales again.
    weight = (codes.astype(F) * scales.reshape(1, -1)).T.copy()
    model = helpers.make_model([helper.make_node("Gemm", ["a", "w", "c"], ["y"], transB=1)],
                               [("a", F, [rows, k])], [("y", F, [rows, n])], {"w": weight, "c": bias})
    spec = (f"quantize-dynamic-int8{{min_elements=0,per_row={str(per_row).lower()},"
            f"per_channel={str(per_column).lower()},reduce_range={str(limit == 64).lower()}}}")
    graph = _optimized(model, "O1," + spec)
    assert [n.op_type for n in graph.op_nodes()] == ["QuantizedMatMul"]
    np.testing.assert_array_equal(interpret(graph, {"a": a})["y"], expected)
    compiled = sdflow.compile(model, passes="O1," + spec)(a=a)[0]
    np.testing.assert_allclose(compiled, expected, rtol=1e-5, atol=1e-4)


def test_split_blocks_of_a_merged_product_each_get_their_own_packed_weight(helpers, rng):
    """Three projections of one tensor (Q/K/V), merged by O2 into one product whose columns a Split hands to
    three outputs, keep their blocks int8 (each block packed on its own)."""
    nodes, weights = [], {}
    for name in "qkv":
        nodes += [helper.make_node("MatMul", ["x", f"w{name}"], [f"{name}m"]),
                  helper.make_node("Add", [f"{name}m", f"b{name}"], [name])]
        weights.update({f"w{name}": rng.standard_normal((48, 40)).astype(F) / 7,
                        f"b{name}": rng.standard_normal(40).astype(F)})
    model = helpers.make_model(nodes, [("x", F, ["seq", 48])], [(o, F, ["seq", 40]) for o in "qkv"], weights)
    spec = "O2,quantize-dynamic-int8{min_elements=0}"
    graph = _optimized(model, spec)
    (fused,) = graph.op_nodes()
    assert fused.parsed.kind == "matmul_int8" and fused.kernel.endswith("Split")
    feeds = {"x": rng.standard_normal((9, 48)).astype(F)}
    reference = interpret(graph, feeds)
    compiled = sdflow.compile(model, passes=spec)(**feeds)
    for name, value in zip("qkv", compiled):
        np.testing.assert_allclose(value, reference[name], rtol=1e-5, atol=1e-5)


def test_small_weights_shared_weights_and_other_products_are_left_alone(helpers, rng):
    nodes = [helper.make_node("MatMul", ["x", "w"], ["h"]), helper.make_node("MatMul", ["h", "x2"], ["y"])]
    model = helpers.make_model(nodes, [("x", F, [4, 8]), ("x2", F, [8, 3])], [("y", F, [4, 3])],
                               {"w": rng.standard_normal((8, 8)).astype(F)})
    graph = import_model(model)
    (pass_,) = parse_pipeline("quantize-dynamic-int8")
    result = pass_.apply(graph, PassContext(explain=True))
    assert not result.modified and any("under min_elements" in note for note in result.notes)


def test_bad_options_are_pipeline_errors():
    with pytest.raises(PipelineError):
        parse_pipeline("quantize-dynamic-int8{min_elements=-1}")
    with pytest.raises(PipelineError):
        parse_pipeline("quantize-dynamic-int8{per_row=maybe}")


def test_the_trained_minilm_keeps_its_embeddings():
    """The reduced (2-layer) trained MiniLM: every embedding's cosine with the float32 one >= 0.99; the compiled
    model computes what the quantized graph's numpy references compute (up to a code that rounds the other way
    when float kernels and numpy differ in the last bit of an activation: one quantization step)."""
    from sdflow import zoo
    path = zoo.export("minilm", reduced=True)
    rng = np.random.default_rng(5)
    feeds = {"input_ids": rng.integers(100, 20000, (4, 24)).astype(np.int64),
             "attention_mask": np.ones((4, 24), np.int64)}
    reference = run_onnxruntime(str(path), feeds)
    compiled = sdflow.compile(path, passes="O2,quantize-dynamic-int8")
    nodes = compiled.graph.op_nodes()
    fused = sum(n.op_type == "Fused" and n.parsed.kind == "matmul_int8" for n in nodes)
    assert fused >= 4 and fused + sum(n.op_type == "QuantizedMatMul" for n in nodes) == 8  # 2 layers x 4
    ours = compiled(**feeds)[0]
    expected = next(iter(reference.values()))
    cosine = np.sum(ours * expected, -1) / (np.linalg.norm(ours, axis=-1) * np.linalg.norm(expected, axis=-1))
    assert cosine.min() >= 0.99
    meant = next(iter(interpret(compiled.graph, feeds).values()))
    np.testing.assert_allclose(ours, meant, atol=2e-3)
    assert np.min(np.sum(ours * meant, -1) / (np.linalg.norm(ours, axis=-1) * np.linalg.norm(meant, axis=-1))) > 0.9999
