"""CompiledModel: inputs checked before native code runs, outputs by name and in order, one build for every
call and shape, and the content-addressed on-disk build cache (atomic across processes)."""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

import sdflow
from sdflow.codegen import cache_root
from sdflow.codegen.build import native_builds
from sdflow.ir import CompileError, InputError

pytestmark = pytest.mark.compiled
F = np.float32


@pytest.fixture(scope="module")
def transformer():
    import importlib.util
    import pathlib
    path = pathlib.Path(__file__).resolve().parents[2] / "examples" / "transformer.py"
    spec = importlib.util.spec_from_file_location("transformer_example", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return sdflow.compile(module.build_model())


def _feeds(batch, seq=16):
    rng = np.random.default_rng(batch)
    return {"x": rng.standard_normal((batch, seq, 64)).astype(F), "mask": rng.integers(0, 2, (batch, seq))}


def test_outputs_by_name_and_order(transformer):
    out = transformer(**_feeds(2))
    assert out.names == ("y", ) and out["y"] is out[0]
    (y, ) = out
    assert y.shape == (2, 16, 64) and y.dtype == F
    assert set(out.as_dict()) == {"y"}
    with pytest.raises(KeyError, match="no output named 'z'"):
        out["z"]


def test_positional_and_keyword_inputs_agree(transformer):
    feeds = _feeds(3)
    np.testing.assert_array_equal(transformer(feeds["x"], feeds["mask"])[0], transformer(**feeds)[0])
    np.testing.assert_array_equal(transformer(feeds["x"], mask=feeds["mask"])[0], transformer(**feeds)[0])


def test_second_call_and_second_shape_do_not_rebuild(transformer):
    builds, program = native_builds(), transformer._program
    for batch in (1, 5, 2, 5):
        assert transformer(**_feeds(batch))[0].shape == (batch, 16, 64)
    assert native_builds() == builds and transformer._program is program


@pytest.mark.parametrize("change, message", [
    (lambda f: f.update(x=f["x"].astype(np.float64)), r"input 'x' has element type float64, expected float32"),
    (lambda f: f.update(x=f["x"][0]), r"input 'x' has rank 2 \(shape \[16, 64\]\), expected rank 3"),
    (lambda f: f.update(x=f["x"][:, :8]), r"input 'x' has shape \[2, 8, 64\], expected f32\[batch,16,64\]"),
    (lambda f: f.update(mask=f["mask"][:1]), r"input 'mask' dim 0 is 1, but batch = 2 from another input"),
    (lambda f: f.pop("mask"), r"missing input\(s\) \['mask'\]; expected x: f32\[batch,16,64\], mask: i64"),
    (lambda f: f.update(extra=f["x"]), r"unknown input 'extra'; the model's inputs are \['x', 'mask'\]"),
    (lambda f: f.update(x=f["x"].tolist()), r"input 'x' must be a numpy array of f32\[batch,16,64\], got list"),
])
def test_bad_inputs_are_rejected_before_running(transformer, change, message):
    feeds = _feeds(2)
    change(feeds)
    with pytest.raises(InputError, match=message):
        transformer(**feeds)


def test_too_many_positional_and_duplicate_inputs(transformer):
    feeds = _feeds(2)
    with pytest.raises(InputError, match="3 positional inputs given, the model takes 2"):
        transformer(feeds["x"], feeds["mask"], feeds["mask"])
    with pytest.raises(InputError, match="input 'x' given both by position and by name"):
        transformer(feeds["x"], x=feeds["x"], mask=feeds["mask"])


def test_non_contiguous_input_is_accepted(transformer):
    feeds = _feeds(2)
    strided = np.asfortranarray(feeds["x"])
    np.testing.assert_array_equal(transformer(strided, feeds["mask"])[0], transformer(**feeds)[0])


@pytest.mark.compiled
def test_a_numpy_scalar_is_a_rank0_input(helpers):
    # np.float32(0.5) is what x.min() or a loop over an array gives; ONNX's test data passes scalars so.
    from onnx import helper
    model = helpers.make_model([helper.make_node("Clip", ["x", "low"], ["y"])],
                               [("x", np.float32, [4]), ("low", np.float32, [])], [("y", np.float32, [4])])
    x = np.array([-1, 0, 0.25, 2], np.float32)
    np.testing.assert_array_equal(sdflow.compile(model)(x, np.float32(0.5))[0], np.maximum(x, 0.5))


def test_unknown_target(helpers):
    with pytest.raises(CompileError, match="unknown target 'tpu'"):
        sdflow.compile(helpers.load_example("mlp").build_model(), target="tpu")


_COMPILE_SCRIPT = """
import sys, numpy as np, importlib.util
spec = importlib.util.spec_from_file_location("mlp", sys.argv[1]); m = importlib.util.module_from_spec(spec)
spec.loader.exec_module(m)
import sdflow
compiled = sdflow.compile(m.build_model())
y = compiled(np.ones((3, 64), np.float32))[0]
print("BUILT" if compiled.built else "CACHED", compiled.build_folder, float(y.sum()))
"""


def _compile_in_subprocesses(helpers, cache, count):
    env = dict(os.environ, SDFLOW_CACHE_DIR=str(cache))
    script = [sys.executable, "-c", _COMPILE_SCRIPT, str(helpers.root / "examples" / "mlp.py")]
    processes = [subprocess.Popen(script, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for _ in range(count)]
    results = []
    for process in processes:
        out, err = process.communicate(timeout=300)
        assert process.returncode == 0, err[-3000:]
        results.append(out.split())
    return results


def test_cache_is_reused_across_processes(helpers, tmp_path):
    (first, ), (second, ) = (_compile_in_subprocesses(helpers, tmp_path, 1) for _ in range(2))
    assert first[0] == "BUILT" and second[0] == "CACHED"
    assert first[1] == second[1] and first[1].startswith(str(tmp_path))
    assert abs(float(first[2]) - 3.0) < 1e-4  # softmax rows sum to one


def test_concurrent_compiles_of_one_model_both_succeed(helpers, tmp_path):
    results = _compile_in_subprocesses(helpers, tmp_path, 2)
    assert {r[1] for r in results} == {results[0][1]}
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(".")) == sorted(
        [os.path.basename(results[0][1]), "graphs"])
    assert len([p for p in (tmp_path / "graphs").iterdir() if not p.name.startswith(".")]) == 1
    assert (tmp_path / results[0][1].split("/")[-1] / "sdflow-complete.json").is_file()


def test_cache_root_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("SDFLOW_CACHE_DIR", str(tmp_path / "c"))
    assert cache_root() == tmp_path / "c"
    monkeypatch.delenv("SDFLOW_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_root() == tmp_path / "xdg" / "sdflow"


def test_out_of_range_token_ids_are_rejected(helpers):
    from onnx import helper
    model = helpers.make_model([helper.make_node("Gather", ["table", "ids"], ["y"], name="embed")],
                               [("ids", np.int64, ["N", 3])], [("y", F, ["N", 3, 4])],
                               {"table": np.arange(40, dtype=F).reshape(10, 4)})
    compiled = sdflow.compile(model)
    np.testing.assert_array_equal(compiled(np.array([[0, 9, -10]]))[0][0, :, 0], [0, 36, 0])
    with pytest.raises(InputError, match=r"input 'ids' holds index 10, out of range for axis 0 of 'table' in "
                                         r"Gather node 'embed' \(valid: -10 to 9\)"):
        compiled(np.array([[1, 10, 2]]))


def test_assumed_equal_symbolic_dims_are_checked(helpers):
    from onnx import helper
    model = helpers.make_model([helper.make_node("Add", ["a", "b"], ["y"], name="add")],
                               [("a", F, ["n", 4]), ("b", F, ["m", 4])], [("y", F, ["n", 4])])
    compiled = sdflow.compile(model)
    np.testing.assert_array_equal(compiled(np.ones((3, 4), F), np.ones((3, 4), F))[0], np.full((3, 4), 2, F))
    with pytest.raises(InputError, match=r"Add node 'add' needs m == n, but the inputs give m = 1 and n = 3"):
        compiled(np.ones((3, 4), F), np.ones((1, 4), F))


def test_assumed_equal_symbolic_dims_are_checked_inside_fused_kernels(helpers):
    """After fusion the element-wise ops live inside a fused node: their assumption is still checked. (It was not:
    at O2 a y of width 1 against an x of width 3 ran, reading past y's row, and returned garbage.)"""
    from onnx import helper
    nodes = [helper.make_node("Add", ["x", "y"], ["a"]), helper.make_node("Relu", ["a"], ["z"]),
             helper.make_node("Mul", ["z", "x"], ["out"])]
    model = helpers.make_model(nodes, [("x", F, ["n", "s"]), ("y", F, ["n", "t"])], [("out", F, ["n", "s"])])
    compiled = sdflow.compile(model, passes="O2")
    assert any(n.op_type == "Fused" for n in compiled.graph.op_nodes())
    x = np.arange(6, dtype=F).reshape(2, 3)
    np.testing.assert_array_equal(compiled(x, x - 1)[0], np.maximum(2 * x - 1, 0) * x)
    with pytest.raises(InputError, match=r"Add in fused node '.*' needs t == s, but the inputs give t = 1 and s = 3"):
        compiled(x, np.ones((2, 1), F))


def test_strided_slice_over_a_symbolic_dim(helpers):
    """x[::4] over a symbolic length: ceil(n / 4) elements, an integer division in C++ (it did not build)."""
    from onnx import helper
    model = helpers.make_model([helper.make_node("Slice", ["x", "start", "end", "axes", "step"], ["y"])],
                               [("x", F, ["n"])], [("y", F, ["k"])],
                               {"start": np.array([0]), "end": np.array([2 ** 62]), "axes": np.array([0]),
                                "step": np.array([4])})
    compiled = sdflow.compile(model)
    for n in (1, 4, 5, 9):
        np.testing.assert_array_equal(compiled(np.arange(n, dtype=F))[0], np.arange(n, dtype=F)[::4])


def test_dims_named_like_op_inputs_compile(helpers, rng):
    """A batch dim called B beside MatMul's input B and LayerNorm's bias B (and a dim called X beside LayerNorm's
    input X): connectors and symbols share the expansions' namespace, so lowering renames the connectors."""
    from onnx import helper
    f32 = np.float32
    nodes = [helper.make_node("MatMul", ["x", "w"], ["h"]),
             helper.make_node("LayerNormalization", ["h", "g", "b"], ["y"], axis=-1)]
    model = helpers.make_model(nodes, [("x", f32, ["B", "X", 8])], [("y", f32, ["B", "X", 6])],
                               {"w": rng.standard_normal((8, 6)).astype(f32), "g": np.ones(6, f32),
                                "b": np.zeros(6, f32)})
    feeds = [{"x": rng.standard_normal(shape).astype(f32)} for shape in ((2, 3, 8), (1, 5, 8))]
    for passes in ("O1", "O2"):
        helpers.check_against_ort(model, feeds, passes=passes)
