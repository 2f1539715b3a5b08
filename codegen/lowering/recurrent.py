"""LSTM, GRU and RNN: one call of codegen/kernels/recurrent.h each (the time loop in native code, gates in
double)."""
from __future__ import annotations

from sdflow.ir.ops.recurrent import DEFAULT_ACTIVATIONS, activation_list
from ._expansion import Ctx, expansion, int_args

# ONNX activation name -> sdflow_kernels::Activation (codegen/kernels/recurrent.h).
_ACTIVATIONS = {
    "Sigmoid": "sigmoid", "Tanh": "tanh", "Relu": "relu", "Affine": "affine", "LeakyRelu": "leaky_relu",
    "ThresholdedRelu": "thresholded_relu", "ScaledTanh": "scaled_tanh", "HardSigmoid": "hard_sigmoid", "Elu": "elu",
    "Softsign": "softsign", "Softplus": "softplus",
}


def _activations(node, direction: int) -> str:
    """The C++ initialiser of one direction's three activation functions (unused ones sigmoid)."""
    count = len(DEFAULT_ACTIVATIONS[node.op_type])
    chosen = activation_list(node)[direction * count:(direction + 1) * count]
    functions = [f"{{sdflow_kernels::Activation::{_ACTIVATIONS[name]}, {float(alpha)!r}, {float(beta)!r}}}"
                 for name, alpha, beta in chosen]
    functions += ["{sdflow_kernels::Activation::sigmoid, 0.0, 0.0}"] * (3 - len(functions))
    return "{" + ", ".join(functions) + "}"


@expansion("LSTM", "GRU", "RNN")
def recurrence(ctx: Ctx):
    """One call of ``sdflow_kernels::recurrence`` (codegen/kernels/recurrent.h)."""
    node = ctx.node
    x_shape = ctx.shape(ctx.connector("in", 0))
    layout = node.attr("layout", 0)
    steps, batch = (x_shape[0], x_shape[1]) if layout == 0 else (x_shape[1], x_shape[0])
    hidden = ctx.shape(ctx.connector("in", 2))[-1]
    backwards = {"forward": [0], "reverse": [1], "bidirectional": [0, 1]}[node.attr("direction", "forward")]
    ctype = ctx.desc(ctx.connector("in", 0)).dtype.ctype
    names = {"x": ("in", 0), "w": ("in", 1), "r": ("in", 2), "b": ("in", 3), "lens": ("in", 4), "h0": ("in", 5),
             "c0": ("in", 6), "p": ("in", 7), "y": ("out", 0), "yh": ("out", 1), "yc": ("out", 2)}
    ptr = {}
    for name, (kind, position) in names.items():
        null_type = "const int32_t" if name == "lens" else ("const " if kind == "in" else "") + ctype
        ptr[name] = ctx.ptr_or_null(ctx.connector(kind, position), null_type)
    clip = node.attr("clip")
    kind = {"LSTM": 0, "GRU": 1, "RNN": 2}[node.op_type]
    reverse = ", ".join("true" if r else "false" for r in backwards + [0] * (2 - len(backwards)))
    activations = ", ".join(_activations(node, d) for d in range(len(backwards)))
    if len(backwards) == 1:
        activations += ", " + _activations(node, 0)
    geometry = (f"{kind}, {int_args((steps, batch, x_shape[2], hidden))}, "
                f"{len(backwards)}, {'true' if layout else 'false'}, {{{reverse}}}, "
                f"{'true' if clip is not None else 'false'}, {float(clip or 0.0)!r}, "
                f"{'true' if kind == 0 and node.attr('input_forget', 0) else 'false'}, "
                f"{'true' if kind == 1 and node.attr('linear_before_reset', 0) else 'false'}, {{{activations}}}")
    args = ", ".join(ptr[n] for n in names)
    code = (f"const sdflow_kernels::RecurrentGeometry geometry_{{{geometry}}};\n"
            f"sdflow_kernels::recurrence({args}, geometry_);\n")
    return ctx.tasklet(code, includes='#include "recurrent.h"\n')
