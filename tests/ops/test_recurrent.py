"""LSTM, GRU and RNN compiled as native time loops: every direction, sequence lengths, initial states, peepholes,
clip, input_forget, linear_before_reset and activation lists against ONNX Runtime at two shapes from one compile
(symbolic steps and batch), and batch-first layout against the numpy reference (ONNX Runtime refuses layout 1)."""
from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

import sdflow
from sdflow.ir import interpret
from sdflow.ort import compare_outputs, run_onnxruntime

pytestmark = pytest.mark.compiled
H, I = 5, 3


def _model(op, direction="forward", layout=0, lengths=False, initial=False, peepholes=False, **attrs):
    rng = np.random.default_rng(len(op) + len(attrs) + 2 * lengths + 3 * initial + 5 * peepholes + layout)
    gates, directions = {"LSTM": 4, "GRU": 3, "RNN": 1}[op], 2 if direction == "bidirectional" else 1
    constants = {"W": rng.standard_normal((directions, gates * H, I)) / 2,
                 "R": rng.standard_normal((directions, gates * H, H)) / 2,
                 "B": rng.standard_normal((directions, 2 * gates * H)) / 2}
    inputs, graph_inputs = ["x", "W", "R", "B", "", ""], [("x", ["t", "n", I] if layout == 0 else ["n", "t", I])]
    if lengths:
        inputs[4] = "lengths"
        graph_inputs.append(("lengths", ["n"]))
    if initial:
        inputs[5] = "h0"
        graph_inputs.append(("h0", [directions, "n", H] if layout == 0 else ["n", directions, H]))
    if op == "LSTM":
        inputs += ["h0" if initial else "", "P" if peepholes else ""]
        if peepholes:
            constants["P"] = rng.standard_normal((directions, 3 * H))
    while not inputs[-1]:
        inputs.pop()
    outputs = ["y", "y_h"] + (["y_c"] if op == "LSTM" else [])
    node = helper.make_node(op, inputs, outputs, hidden_size=H, direction=direction, layout=layout, **attrs)
    graph = helper.make_graph(
        [node], op.lower(), [helper.make_tensor_value_info(n, TensorProto.INT32 if n == "lengths" else TensorProto.FLOAT,
                                                            d) for n, d in graph_inputs],
        [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in outputs],
        [numpy_helper.from_array(v.astype(np.float32), k) for k, v in constants.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)]), [n for n, _ in graph_inputs]


def _feeds(names, steps, batch, directions, layout, rng):
    feeds = {"x": rng.standard_normal((steps, batch, I) if layout == 0 else (batch, steps, I)).astype(np.float32)}
    if "lengths" in names:
        feeds["lengths"] = rng.integers(1, steps + 1, batch).astype(np.int32)
    if "h0" in names:
        shape = (directions, batch, H) if layout == 0 else (batch, directions, H)
        feeds["h0"] = rng.standard_normal(shape).astype(np.float32)
    return feeds


CASES = [("LSTM", {}), ("LSTM", dict(direction="bidirectional", lengths=True, initial=True, peepholes=True)),
         ("LSTM", dict(direction="reverse", clip=0.7)), ("LSTM", dict(input_forget=1)),
         ("LSTM", dict(activations=["HardSigmoid", "Softsign", "Elu"], activation_alpha=[0.3, 0.5],
                       activation_beta=[0.4])),
         ("GRU", {}), ("GRU", dict(linear_before_reset=1, direction="bidirectional", lengths=True, initial=True)),
         ("GRU", dict(direction="reverse", clip=0.5)), ("RNN", dict(direction="bidirectional", initial=True)),
         ("RNN", dict(activations=["Relu"], lengths=True))]


@pytest.mark.parametrize("op, attrs", CASES, ids=[f"{op}-{'-'.join(a) or 'plain'}" for op, a in CASES])
def test_recurrences_match_onnxruntime(op, attrs):
    model, names = _model(op, **attrs)
    compiled = sdflow.compile(model)
    rng = np.random.default_rng(0)
    directions = 2 if attrs.get("direction") == "bidirectional" else 1
    for steps, batch in ((4, 2), (7, 3)):
        feeds = _feeds(names, steps, batch, directions, 0, rng)
        for comparison in compare_outputs(compiled(**feeds).as_dict(), run_onnxruntime(model, feeds), 1e-5):
            assert comparison.ok, str(comparison)


@pytest.mark.parametrize("op", ["LSTM", "GRU"])
def test_batch_first_layout_matches_the_reference(op):
    model, names = _model(op, direction="bidirectional", layout=1, lengths=True, initial=True)
    compiled = sdflow.compile(model)
    feeds = _feeds(names, 5, 3, 2, 1, np.random.default_rng(1))
    got = compiled(**feeds).as_dict()
    expected = interpret(sdflow.load(model), feeds)
    assert got["y"].shape == (3, 5, 2, H)
    for name in got:
        np.testing.assert_allclose(got[name], expected[name], atol=1e-5)


def test_sequence_lengths_outside_the_steps_are_an_input_error():
    model, names = _model("GRU", lengths=True)
    compiled = sdflow.compile(model)
    x = np.zeros((4, 2, I), np.float32)
    assert compiled(x=x, lengths=np.array([4, 0], np.int32))[0].shape == (4, 1, 2, H)
    for lengths in ([5, 1], [-1, 2]):
        with pytest.raises(sdflow.InputError, match=r"sequence lengths .* GRU node .* takes 0 to 4"):
            compiled(x=x, lengths=np.array(lengths, np.int32))
