"""A transformer encoder block as exporters write it: multi-head self-attention with a padding mask
(shape arithmetic via Shape/Gather/Concat, Equal/Where masking, scaled Softmax), residuals, one fused
LayerNormalization and one decomposed LayerNorm (ReduceMean/Sub/Pow/Sqrt/Div), and a GELU written as the Erf
chain. Symbolic batch; compiled and compared with ONNX Runtime."""
from __future__ import annotations

import pathlib
import sys

import numpy as np
from onnx import TensorProto, helper, numpy_helper

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from _compare import main_for  # noqa: E402  (examples/ is a folder of scripts, not a package)

SEQ, MODEL, HEADS, FFN = 16, 64, 4, 128
HEAD = MODEL // HEADS
INPUTS = {"x": (np.float32, ("batch", SEQ, MODEL)), "mask": (np.int64, ("batch", SEQ))}


def build_model(seed: int = 0, seq: int = SEQ, model: int = MODEL, heads: int = HEADS, ffn: int = FFN,
                decomposed_layernorm: bool = True):
    """The block at these sizes (BERT-base: seq 128, model 768, heads 12, ffn 3072); the second LayerNorm is the
    decomposed chain unless ``decomposed_layernorm`` is False."""
    SEQ, MODEL, HEADS, FFN, HEAD = seq, model, heads, ffn, model // heads  # noqa: N806  (the module's names)
    rng = np.random.default_rng(seed)
    inits = []

    def const(name, value, dtype=np.float32):
        inits.append(numpy_helper.from_array(np.asarray(value, dtype=dtype), name))
        return name

    def dense(name, shape):
        return const(name, rng.normal(0, 1 / np.sqrt(shape[0]), shape))

    nodes = []

    def node(op, inputs, output, **attrs):
        nodes.append(helper.make_node(op, inputs, [output], name=output, **attrs))
        return output

    def linear(x, name, fan_in, fan_out):
        y = node("MatMul", [x, dense(f"{name}.w", (fan_in, fan_out))], f"{name}.mm")
        return node("Add", [y, const(f"{name}.b", rng.normal(0, 0.02, fan_out))], f"{name}.out")

    # Heads shape [batch, SEQ, HEADS, HEAD] built from Shape(x), as torch.onnx exports it.
    batch = node("Gather", [node("Shape", ["x"], "x.shape"), const("zero", 0, np.int64)], "batch", axis=0)
    batch1 = node("Unsqueeze", [batch, const("axis0", [0], np.int64)], "batch1")
    heads_shape = node("Concat", [batch1, const("rest", [SEQ, HEADS, HEAD], np.int64)], "heads.shape", axis=0)

    def split_heads(x, name, perm):
        reshaped = node("Reshape", [x, heads_shape], f"{name}.heads")
        return node("Transpose", [reshaped], f"{name}.t", perm=perm)

    q = split_heads(linear("x", "q", MODEL, MODEL), "q", [0, 2, 1, 3])
    k = split_heads(linear("x", "k", MODEL, MODEL), "k", [0, 2, 3, 1])
    v = split_heads(linear("x", "v", MODEL, MODEL), "v", [0, 2, 1, 3])
    scores = node("Div", [node("MatMul", [q, k], "qk"), const("scale", np.sqrt(HEAD))], "scores")
    masked = node("Equal", ["mask", const("zero_mask", 0, np.int64)], "mask.off")
    masked = node("Unsqueeze", [masked, const("axes12", [1, 2], np.int64)], "mask.off4")
    scores = node("Where", [masked, const("neg", -1e4), scores], "scores.masked")
    probs = node("Softmax", [scores], "probs", axis=-1)
    context = node("Transpose", [node("MatMul", [probs, v], "context.heads")], "context.t", perm=[0, 2, 1, 3])
    context = node("Reshape", [context, const("merge", [0, SEQ, MODEL], np.int64)], "context")
    attention = linear(context, "o", MODEL, MODEL)
    h = node("LayerNormalization", [node("Add", ["x", attention], "res1"), const("ln1.g", rng.uniform(0.8, 1.2, MODEL)),
                                    const("ln1.b", rng.normal(0, 0.1, MODEL))], "ln1", axis=-1, epsilon=1e-5)

    up = linear(h, "ffn1", MODEL, FFN)
    erf = node("Erf", [node("Div", [up, const("sqrt2", np.sqrt(2.0))], "gelu.scaled")], "gelu.erf")
    gelu = node("Mul", [node("Mul", [up, node("Add", [erf, const("one", 1.0)], "gelu.1p")], "gelu.prod"),
                        const("half", 0.5)], "gelu")
    residual = node("Add", [h, linear(gelu, "ffn2", FFN, MODEL)], "res2")

    if not decomposed_layernorm:
        out = node("LayerNormalization", [residual, const("ln2.g", rng.uniform(0.8, 1.2, MODEL)),
                                          const("ln2.b", rng.normal(0, 0.1, MODEL))], "y", axis=-1, epsilon=1e-5)
        return _model(nodes, inits, out, SEQ, MODEL)
    # LayerNorm decomposed the way older exporters write it.
    mean = node("ReduceMean", [residual], "ln2.mean", axes=[-1], keepdims=1)
    centered = node("Sub", [residual, mean], "ln2.centered")
    var = node("ReduceMean", [node("Pow", [centered, const("two", 2.0)], "ln2.sq")], "ln2.var", axes=[-1])
    std = node("Sqrt", [node("Add", [var, const("eps", 1e-5)], "ln2.var_eps")], "ln2.std")
    normed = node("Div", [centered, std], "ln2.normed")
    out = node("Add", [node("Mul", [normed, const("ln2.g", rng.uniform(0.8, 1.2, MODEL))], "ln2.scaled"),
                       const("ln2.b", rng.normal(0, 0.1, MODEL))], "y")
    return _model(nodes, inits, out, SEQ, MODEL)


def _model(nodes, inits, out, seq, model):
    graph = helper.make_graph(
        nodes, "encoder_block",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", seq, model]),
         helper.make_tensor_value_info("mask", TensorProto.INT64, ["batch", seq])],
        [helper.make_tensor_value_info(out, TensorProto.FLOAT, ["batch", seq, model])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="sdflow-examples")


if __name__ == "__main__":
    main_for(build_model(), INPUTS, name="transformer")
