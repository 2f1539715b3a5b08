"""float32 products on codegen/kernels/gemm.h: constant weights packed once at lowering (a fused QKV projection's
three column blocks each packed on its own), run-time operands packed per call, batched products; against ONNX
Runtime, and again from a cached build whose packed weights are recomputed from the constants."""
from __future__ import annotations

import numpy as np
import pytest
from onnx import helper

import sdflow
from sdflow.codegen.lowering.packing import gemm_packed_name, pack_gemm, packed_offsets
from sdflow.ort import run_onnxruntime

pytestmark = pytest.mark.compiled
F = np.float32


def _products_model(helpers, rng, hidden=40, width=24):
    """x . W + b split into three, a product of two run-time operands (Q . K^T per head: batched, B packed per
    call) and a Gemm with transB and alpha."""
    weights = {"w": rng.standard_normal((hidden, 3 * width)).astype(F), "b": rng.standard_normal(3 * width).astype(F),
               "g": rng.standard_normal((7, hidden)).astype(F), "split": np.array([width] * 3, np.int64),
               "shape": np.array([0, 0, 2, width // 2], np.int64), "perm_q": np.array([0, 2, 1, 3], np.int64)}
    nodes = [helper.make_node("MatMul", ["x", "w"], ["p"]), helper.make_node("Add", ["p", "b"], ["pb"]),
             helper.make_node("Split", ["pb", "split"], ["q", "k", "v"], axis=-1),
             helper.make_node("Reshape", ["q", "shape"], ["qh"]), helper.make_node("Reshape", ["k", "shape"], ["kh"]),
             helper.make_node("Transpose", ["qh"], ["qt"], perm=[0, 2, 1, 3]),
             helper.make_node("Transpose", ["kh"], ["kt"], perm=[0, 2, 3, 1]),
             helper.make_node("MatMul", ["qt", "kt"], ["scores"]),
             helper.make_node("Reshape", ["x", "flat"], ["x2"]),
             helper.make_node("Gemm", ["x2", "g"], ["y"], transB=1, alpha=0.5)]
    weights["flat"] = np.array([-1, hidden], np.int64)
    del weights["perm_q"]
    return helpers.make_model(nodes, [("x", F, ["B", "S", hidden])],
                              [("v", F, ["B", "S", width]), ("scores", F, ["B", 2, "S", "S"]), ("y", F, ["R", 7])],
                              weights)


def test_products_match_onnxruntime_and_reload_from_the_cache(helpers, rng, tmp_path, monkeypatch):
    monkeypatch.setenv("SDFLOW_CACHE_DIR", str(tmp_path))
    model = _products_model(helpers, rng)
    feeds = [{"x": rng.standard_normal((b, s, 40)).astype(F)} for b, s in ((1, 1), (2, 19), (1, 70))]
    compiled = helpers.check_against_ort(model, feeds, passes="O2")
    code = "".join(p.read_text() for p in compiled.build_folder.glob("src/cpu/*.cpp"))
    assert code.count("gemm_packed(") == 2 and "gemm_batched(" in code and "cblas_s" not in code
    packed = sorted(name for name in compiled.build_record.weights if "__gemm32" in name)
    assert packed == [gemm_packed_name("g", True, [7]), gemm_packed_name("w", False, [72])]
    again = sdflow.compile(model, passes="O2")  # the graph and build from the cache: packed weights recomputed
    assert again.graph_from_cache and not again.built
    for feed in feeds:
        for name, expected in run_onnxruntime(model, feed).items():
            np.testing.assert_allclose(again(**feed).as_dict()[name], expected, rtol=1e-4, atol=1e-4)


def test_fused_qkv_blocks_are_packed_apart(helpers, rng, tmp_path, monkeypatch):
    """fuse-attention's QKV projection (one MatMul, then a Split into Q, K and V) writes each block straight into
    its output from its own packed block of the concatenated weight."""
    monkeypatch.setenv("SDFLOW_CACHE_DIR", str(tmp_path))
    example = helpers.load_example("transformer")
    model = example.build_model()
    feeds = [{"x": rng.standard_normal((b, example.SEQ, example.MODEL)).astype(F),
              "mask": (rng.random((b, example.SEQ)) < 0.8).astype(np.int64)} for b in (1, 3)]
    compiled = helpers.check_against_ort(model, feeds, passes="O2")
    code = "".join(p.read_text() for p in compiled.build_folder.glob("src/cpu/*.cpp"))
    assert "_p + 0, _c0" in code and "cblas_s" not in code
    width = example.MODEL
    assert any(name.endswith(f"__gemm32n_{width}_{width}_{width}") for name in compiled.build_record.weights)
    again = sdflow.compile(model, passes="O2")
    assert again.graph_from_cache and not again.built
    for feed in feeds:
        for name, expected in run_onnxruntime(model, feed).items():
            np.testing.assert_allclose(again(**feed).as_dict()[name], expected, rtol=1e-4, atol=1e-4)


def test_pack_gemm_layout(rng):
    """Panels of 32 columns, [panel][k][32], zero-padded; column blocks packed one after another."""
    w = rng.standard_normal((5, 70)).astype(F)
    packed = pack_gemm(w, False, [70])
    assert packed.shape == (3 * 5 * 32,)
    panels = packed.reshape(3, 5, 32)
    np.testing.assert_array_equal(panels[1, :, :], w[:, 32:64])
    np.testing.assert_array_equal(panels[2, :, :6], w[:, 64:])
    assert not panels[2, :, 6:].any()
    np.testing.assert_array_equal(pack_gemm(w.T.copy(), True, [70]), packed)
    blocks = pack_gemm(w, False, [30, 40])
    offsets = packed_offsets(5, [30, 40])
    assert offsets == [0, 5 * 32] and blocks.size == 5 * 32 + 2 * 5 * 32
    np.testing.assert_array_equal(blocks[offsets[1]:].reshape(2, 5, 32)[0], w[:, 30:62])


def test_kernel_options_choose_the_kernel_and_key_the_build(helpers, rng, tmp_path, monkeypatch):
    """``options={"gemm": "blas"}`` runs the products on OpenBLAS: the nodes' ``implementation`` says so, the build is
    another one (never the cached default build), and a second compile with the same options is served from the
    cache. Unknown options and values are CompileErrors naming the choices."""
    monkeypatch.setenv("SDFLOW_CACHE_DIR", str(tmp_path))
    model = _products_model(helpers, rng)
    feeds = [{"x": rng.standard_normal((2, 5, 40)).astype(F)}]
    packed = helpers.check_against_ort(model, feeds, passes="O2")
    blas = helpers.check_against_ort(model, feeds, passes="O2", options={"gemm": "blas"})
    assert blas.build_folder != packed.build_folder
    kinds = {n.implementation for n in blas.graph.op_nodes() if n.op_type in ("MatMul", "Gemm", "Fused")}
    assert kinds == {"blas"}
    assert {n.implementation for n in packed.graph.op_nodes() if n.op_type == "Gemm"} == {"gemm-packed"}
    code = "".join(p.read_text() for p in blas.build_folder.glob("src/cpu/*.cpp"))
    assert "cblas_sgemm" in code and "gemm_packed" not in code
    again = sdflow.compile(model, passes="O2", options=["gemm=blas"])
    assert again.build_folder == blas.build_folder and not again.built
    with pytest.raises(sdflow.CompileError, match="gemm.*packed, blas"):
        sdflow.compile(model, options={"gemm": "mkl"})
    with pytest.raises(sdflow.CompileError, match="unknown option.*winograd"):
        sdflow.compile(model, options={"winogard": False})
