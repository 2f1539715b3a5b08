"""Recurrences: LSTM, GRU and RNN (every direction, activation list, clip, sequence lengths, initial states, both
layouts, LSTM peepholes and input_forget, GRU's linear_before_reset). The reference steps through time in numpy."""
from __future__ import annotations

import numpy as np

from ..errors import ShapeInferenceError
from ..types import TensorType
from ._base import Op, op

__all__ = ["GATES", "DEFAULT_ACTIVATIONS", "activation_list", "ACTIVATIONS"]

GATES = {"LSTM": 4, "GRU": 3, "RNN": 1}
DEFAULT_ACTIVATIONS = {"LSTM": ["Sigmoid", "Tanh", "Tanh"], "GRU": ["Sigmoid", "Tanh"], "RNN": ["Tanh"]}
# name -> (numpy function of x, alpha, beta; default alpha, default beta)
ACTIVATIONS = {
    "Sigmoid": (lambda x, a, b: 1 / (1 + np.exp(-x)), 0.0, 0.0),
    "Tanh": (lambda x, a, b: np.tanh(x), 0.0, 0.0),
    "Relu": (lambda x, a, b: np.maximum(x, 0), 0.0, 0.0),
    "Affine": (lambda x, a, b: a * x + b, 1.0, 0.0),
    "LeakyRelu": (lambda x, a, b: np.where(x >= 0, x, a * x), 0.01, 0.0),
    "ThresholdedRelu": (lambda x, a, b: np.where(x > a, x, 0), 1.0, 0.0),
    "ScaledTanh": (lambda x, a, b: a * np.tanh(b * x), 1.0, 1.0),
    "HardSigmoid": (lambda x, a, b: np.clip(a * x + b, 0, 1), 0.2, 0.5),
    "Elu": (lambda x, a, b: np.where(x >= 0, x, a * (np.exp(x) - 1)), 1.0, 0.0),
    "Softsign": (lambda x, a, b: x / (1 + np.abs(x)), 0.0, 0.0),
    "Softplus": (lambda x, a, b: np.log1p(np.exp(x)), 0.0, 0.0),
}
_TAKES_ALPHA = ("Affine", "LeakyRelu", "ThresholdedRelu", "ScaledTanh", "HardSigmoid", "Elu")
_TAKES_BETA = ("Affine", "ScaledTanh", "HardSigmoid")


def _directions(node) -> list[bool]:
    """One entry per direction: True where it runs backwards in time."""
    direction = node.attr("direction", "forward")
    return {"forward": [False], "reverse": [True], "bidirectional": [False, True]}[direction]


def activation_list(node) -> list[tuple[str, float, float]]:
    """(name, alpha, beta) per activation and direction, the ONNX defaults filled in."""
    count = len(DEFAULT_ACTIVATIONS[node.op_type])
    names = list(node.attr("activations") or DEFAULT_ACTIVATIONS[node.op_type] * len(_directions(node)))
    if node.op_type == "RNN" and len(_directions(node)) == 1 and len(names) == 2:
        # RNN's schema default is ["Tanh", "Tanh"] whatever the direction; one direction uses the first.
        names = names[:1]
    alphas, betas = list(node.attr("activation_alpha") or []), list(node.attr("activation_beta") or [])
    result = []
    for name in names:
        canonical = next((a for a in ACTIVATIONS if a.lower() == str(name).lower()), None)
        if canonical is None:
            raise ShapeInferenceError(f"{node.op_type}: unknown activation {name!r}")
        _, alpha, beta = ACTIVATIONS[canonical]
        # The lists are consumed by the activations that take the value, in order (as ONNX Runtime does).
        if canonical in _TAKES_ALPHA and alphas:
            alpha = alphas.pop(0)
        if canonical in _TAKES_BETA and betas:
            beta = betas.pop(0)
        result.append((canonical, alpha, beta))
    if len(result) != count * len(_directions(node)):
        raise ShapeInferenceError(f"{node.op_type}: {len(result)} activations for {len(_directions(node))} "
                                  f"direction(s); expected {count} each")
    return result


class Recurrence(Op):
    @classmethod
    def infer(cls, node, inputs, values):
        x, w = inputs[0], inputs[1]
        if x.rank != 3 or w.rank != 3:
            raise ShapeInferenceError(f"{node.op_type}: X and W must be 3-D")
        hidden = node.attr("hidden_size") or w.shape[1] // GATES[node.op_type]
        directions = len(_directions(node))
        activation_list(node)
        layout = node.attr("layout", 0)
        steps, batch = (x.shape[0], x.shape[1]) if layout == 0 else (x.shape[1], x.shape[0])
        y = [steps, directions, batch, hidden] if layout == 0 else [batch, steps, directions, hidden]
        state = [directions, batch, hidden] if layout == 0 else [batch, directions, hidden]
        outputs = [TensorType(x.dtype, y), TensorType(x.dtype, state)]
        if node.op_type == "LSTM":
            outputs.append(TensorType(x.dtype, state))
        return outputs[:max(1, len(node.onnx_outputs))]

    @classmethod
    def reference(cls, node, x, w, r, b=None, lengths=None, h0=None, c0=None, peepholes=None):
        layout = node.attr("layout", 0)
        if layout:
            x = x.transpose(1, 0, 2)
            h0 = None if h0 is None else h0.transpose(1, 0, 2)
            c0 = None if c0 is None else c0.transpose(1, 0, 2)
        steps, batch, _ = x.shape
        gates, hidden = GATES[node.op_type], r.shape[-1]
        directions = _directions(node)
        functions = activation_list(node)
        per = len(DEFAULT_ACTIVATIONS[node.op_type])
        lengths = np.full(batch, steps) if lengths is None else lengths.astype(np.int64)
        y = np.zeros((steps, len(directions), batch, hidden), np.float64)
        y_h = np.zeros((len(directions), batch, hidden), np.float64)
        y_c = np.zeros_like(y_h)
        for d, backwards in enumerate(directions):
            acts = [lambda v, f=f: ACTIVATIONS[f[0]][0](v, f[1], f[2]) for f in functions[d * per:(d + 1) * per]]
            bias = np.zeros(2 * gates * hidden) if b is None else b[d].astype(np.float64)
            h = np.zeros((batch, hidden)) if h0 is None else h0[d].astype(np.float64)
            c = np.zeros((batch, hidden)) if c0 is None else c0[d].astype(np.float64)
            p = np.zeros(3 * hidden) if peepholes is None else peepholes[d].astype(np.float64)
            for n in range(batch):
                hn, cn = h[n].copy(), c[n].copy()
                order = range(lengths[n] - 1, -1, -1) if backwards else range(lengths[n])
                for t in order:
                    hn, cn = cls.step(node, x[t, n].astype(np.float64), hn, cn, w[d].astype(np.float64),
                                      r[d].astype(np.float64), bias, p, acts, hidden)
                    y[t, d, n] = hn
                y_h[d, n], y_c[d, n] = hn, cn
        if layout:
            y, y_h, y_c = y.transpose(2, 0, 1, 3), y_h.transpose(1, 0, 2), y_c.transpose(1, 0, 2)
        return [a.astype(x.dtype) for a in (y, y_h, y_c)][:max(1, len(node.onnx_outputs))]

    @staticmethod
    def _clip(node, v):
        clip = node.attr("clip")
        return v if clip is None else np.clip(v, -clip, clip)


@op("LSTM", since=7)
class LSTM(Recurrence):
    @classmethod
    def step(cls, node, x, h, c, w, r, bias, p, acts, hidden):
        g = w @ x + r @ h + bias[:4 * hidden] + bias[4 * hidden:]
        gi, go, gf, gc = (g[k * hidden:(k + 1) * hidden] for k in range(4))  # ONNX's gate order: i, o, f, c
        i = acts[0](cls._clip(node, gi + p[:hidden] * c))
        f = 1 - i if node.attr("input_forget", 0) else acts[0](cls._clip(node, gf + p[2 * hidden:] * c))
        c = f * c + i * acts[1](cls._clip(node, gc))
        o = acts[0](cls._clip(node, go + p[hidden:2 * hidden] * c))
        return o * acts[2](c), c


@op("GRU", since=7)
class GRU(Recurrence):
    @classmethod
    def step(cls, node, x, h, c, w, r, bias, p, acts, hidden):
        wb, rb = bias[:3 * hidden], bias[3 * hidden:]
        gx = w @ x + wb
        z = acts[0](cls._clip(node, gx[:hidden] + r[:hidden] @ h + rb[:hidden]))
        reset = acts[0](cls._clip(node, gx[hidden:2 * hidden] + r[hidden:2 * hidden] @ h + rb[hidden:2 * hidden]))
        if node.attr("linear_before_reset", 0):
            candidate = gx[2 * hidden:] + reset * (r[2 * hidden:] @ h + rb[2 * hidden:])
        else:
            candidate = gx[2 * hidden:] + r[2 * hidden:] @ (reset * h) + rb[2 * hidden:]
        return (1 - z) * acts[1](cls._clip(node, candidate)) + z * h, c


@op("RNN", since=7)
class RNN(Recurrence):
    @classmethod
    def step(cls, node, x, h, c, w, r, bias, p, acts, hidden):
        return acts[0](cls._clip(node, w @ x + r @ h + bias[:hidden] + bias[hidden:])), c
