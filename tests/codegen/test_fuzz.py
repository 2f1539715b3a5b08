"""A fuzzer of random graphs (element-wise ops, Concat, Slice, Transpose, MatMul, Softmax; dead branches; one or two
outputs), called with batch sizes the model may not take: each compiles and matches ONNX Runtime, or fails with an
SdflowError (an InputError exactly where ONNX Runtime refuses the input) — no other exception escapes.
``python tests/codegen/test_fuzz.py SEED COUNT [PIPELINE]`` runs a longer campaign."""
from __future__ import annotations

import sys

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

import sdflow
from sdflow.ort import compare_outputs, run_onnxruntime


def random_model(rng):
    """A random valid graph over x[n, 8] and the names of its outputs."""
    nodes, inits = [], []
    tensors = {"x": (4, 8)}
    def fresh(shape):
        name = f"t{len(tensors)}"; tensors[name] = shape; return name
    for k in range(int(rng.integers(3, 10))):
        choice = rng.integers(0, 7)
        src = str(rng.choice(list(tensors)))
        shape = tensors[src]
        if choice == 0:
            op = str(rng.choice(["Relu", "Exp", "Neg", "Tanh", "Sigmoid", "Abs"]))
            out = fresh(shape); nodes.append(helper.make_node(op, [src], [out]))
        elif choice == 1:
            same = [t for t, s in tensors.items() if s == shape]
            other = str(rng.choice(same)); op = str(rng.choice(["Add", "Mul", "Sub", "Max"]))
            out = fresh(shape); nodes.append(helper.make_node(op, [src, other], [out]))
        elif choice == 2:
            same = [t for t, s in tensors.items() if s[0] == shape[0]]
            other = str(rng.choice(same))
            out = fresh((shape[0], shape[1] + tensors[other][1])); nodes.append(helper.make_node("Concat", [src, other], [out], axis=1))
        elif choice == 3 and shape[1] > 2:
            a = int(rng.integers(0, shape[1] - 1)); b = int(rng.integers(a + 1, shape[1] + 1))
            st, en = f"c{k}s", f"c{k}e"
            inits += [numpy_helper.from_array(np.array([a], np.int64), st), numpy_helper.from_array(np.array([b], np.int64), en),
                      numpy_helper.from_array(np.array([1], np.int64), f"c{k}a")]
            out = fresh((shape[0], b - a)); nodes.append(helper.make_node("Slice", [src, st, en, f"c{k}a"], [out]))
        elif choice == 4:
            out = fresh((shape[1], shape[0])); nodes.append(helper.make_node("Transpose", [src], [out], perm=[1, 0]))
        elif choice == 5:
            n = int(rng.choice([4, 8, 5]))
            w = f"w{k}"; inits.append(numpy_helper.from_array((rng.standard_normal((shape[1], n)) / 3).astype(np.float32), w))
            out = fresh((shape[0], n)); nodes.append(helper.make_node("MatMul", [src, w], [out]))
        else:
            out = fresh(shape); nodes.append(helper.make_node("Softmax", [src], [out], axis=-1))
    names = list(tensors)[1:]
    outs = [names[-1]] + ([str(rng.choice(names))] if rng.random() < 0.3 else [])
    outs = list(dict.fromkeys(outs))
    g = helper.make_graph(nodes, "fuzz", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 8])],
                          [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in outs], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), outs


def run_one(model, outputs, rng, passes) -> str | None:
    """None when the model matches ONNX Runtime; the reason otherwise (a non-SdflowError propagates)."""
    try:
        compiled = sdflow.compile(model, passes=passes)
    except sdflow.SdflowError as error:
        return f"{type(error).__name__}: {error}"
    # The generator tracks shapes for n = 4; other batch sizes may be inputs the model cannot take.
    x = rng.standard_normal((int(rng.choice([1, 3, 4, 4])), 8)).astype(np.float32)
    try:
        reference = run_onnxruntime(model, {"x": x})
    except Exception:  # ONNX Runtime refuses the input: so must sdflow, with an InputError
        try:
            compiled(x)
        except sdflow.InputError:
            return None
        return f"batch {len(x)}: ONNX Runtime refuses it, sdflow returns numbers"
    try:
        outputs = compiled(x).as_dict()
    except sdflow.InputError as error:  # safe, but ONNX Runtime answers (e.g. a Slice it clamps to empty)
        return f"batch {len(x)}: refused an input ONNX Runtime takes: {error}"
    for comparison in compare_outputs(outputs, reference):
        if not comparison.ok:
            return f"wrong result: {comparison}"
    return None


@pytest.mark.compiled
@pytest.mark.parametrize("passes", ["O0", "O2"])
def test_random_graphs_compile_and_match_onnxruntime(passes):
    rng = np.random.default_rng(11 if passes == "O0" else 12)
    failures = [reason for model, outputs in (random_model(rng) for _ in range(6))
                if (reason := run_one(model, outputs, rng, passes)) is not None]
    assert failures == []


if __name__ == "__main__":
    seed, count = int(sys.argv[1]), int(sys.argv[2])
    generator = np.random.default_rng(seed)
    for index in range(count):
        reason = run_one(*random_model(generator), generator, sys.argv[3] if len(sys.argv) > 3 else "O2")
        print(index, reason or "ok", flush=True)
