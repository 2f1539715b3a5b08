"""Attention (opset 23-25): scaled dot-product attention with grouped KV heads, 3-D or 4-D layouts, a boolean or
additive mask, causal and sliding-window masking, a KV cache (past -> present), per-sample valid KV lengths,
softcap, and the optional QK output. The numpy reference is ONNX's own (onnx.reference), whose semantics the
expected outputs of the conformance suite follow. sdflow's one extension attribute, ``nan_probabilities_to_zero``
(ir/nodes.EXTENSION_ATTRIBUTES, set by fuse-attention), counts NaN probabilities as 0, as PyTorch's export of
scaled_dot_product_attention does with Where(IsNaN(P), 0, P) after the softmax."""
from __future__ import annotations

import dataclasses

import numpy as np

from ..errors import ShapeInferenceError
from ..types import TensorType
from ._base import Op, op

__all__ = ["AttentionDims", "attention_dims"]


@dataclasses.dataclass(frozen=True)
class AttentionDims:
    three_d: bool
    batch: object
    q_heads: int
    kv_heads: int
    q_len: object
    kv_len: object
    past_len: object
    head_size: object
    v_head_size: object

    @property
    def total_len(self):
        return self.past_len + self.kv_len


def attention_dims(node, q: TensorType, k: TensorType, v: TensorType, past_key: TensorType | None) -> AttentionDims:
    if not q.rank == k.rank == v.rank or q.rank not in (3, 4):
        raise ShapeInferenceError(f"Attention: Q, K, V must all be 3-D or all 4-D, got {q}, {k}, {v}")
    if q.rank == 3:
        q_heads, kv_heads = node.attr("q_num_heads"), node.attr("kv_num_heads")
        if not q_heads or not kv_heads:
            raise ShapeInferenceError("Attention: 3-D inputs need q_num_heads and kv_num_heads")
        dims = AttentionDims(True, q.shape[0], q_heads, kv_heads, q.shape[1], k.shape[1], 0,
                             q.shape[2] // q_heads, v.shape[2] // kv_heads)
    else:
        dims = AttentionDims(False, q.shape[0], q.shape[1], k.shape[1], q.shape[2], k.shape[2], 0, q.shape[3],
                             v.shape[3])
    if not isinstance(dims.q_heads, int) or not isinstance(dims.kv_heads, int) or dims.q_heads % dims.kv_heads:
        raise ShapeInferenceError(f"Attention: {dims.q_heads} query heads in groups of {dims.kv_heads} KV heads")
    if past_key is not None:
        dims = dataclasses.replace(dims, past_len=past_key.shape[2])
    return dims


@op("Attention", since=23)
class Attention(Op):
    @classmethod
    def infer(cls, node, inputs, values):
        q, k, v = inputs[:3]
        if q.dtype not in (np.float32, np.float64):
            # float16 results would differ from a float16 computation in the last bits; refuse rather than
            # give a result that is off by more than the tolerance.
            raise ShapeInferenceError(f"Attention: {q.dtype} inputs are not supported (float32, float64)")
        past_key = inputs[4] if len(inputs) > 4 else None
        d = attention_dims(node, q, k, v, past_key)
        y = [d.batch, d.q_len, d.q_heads * d.v_head_size] if d.three_d else [d.batch, d.q_heads, d.q_len,
                                                                             d.v_head_size]
        return [TensorType(q.dtype, y),
                TensorType(q.dtype, [d.batch, d.kv_heads, d.total_len, d.head_size]),
                TensorType(q.dtype, [d.batch, d.kv_heads, d.total_len, d.v_head_size]),
                TensorType(q.dtype, [d.batch, d.q_heads, d.q_len, d.total_len])]

    @classmethod
    def reference(cls, node, q, k, v, mask=None, past_key=None, past_value=None, nonpad_kv_seqlen=None):
        from onnx.reference.ops.op_attention import _compute_attention
        names = ("scale", "is_causal", "q_num_heads", "kv_num_heads", "softmax_precision", "softcap",
                 "qk_matmul_output_mode", "left_window_size", "right_window_size")
        attrs = {name: node.attr(name) for name in names if node.attr(name) is not None}
        nan_to_zero = bool(node.attr("nan_probabilities_to_zero", 0))
        if nan_to_zero:  # (fuse-attention sets it on 4-D attention without a cache or a QK output only)
            if q.ndim != 4 or past_key is not None or attrs.get("qk_matmul_output_mode", 0):
                raise ShapeInferenceError("Attention: nan_probabilities_to_zero needs 4-D inputs without a cache "
                                          "or a QK output")
            attrs["qk_matmul_output_mode"] = 3  # the probabilities, to apply the rule to
        outputs = _compute_attention(q, k, v, attn_mask=mask, past_key=past_key, past_value=past_value,
                                     nonpad_kv_seqlen=nonpad_kv_seqlen, _validate_attention25=node.opset >= 25,
                                     **attrs)
        if nan_to_zero:
            probabilities = np.asarray(outputs[3])
            probabilities = np.where(np.isnan(probabilities), probabilities.dtype.type(0), probabilities)
            values = np.repeat(v, q.shape[1] // v.shape[1], axis=1)  # each KV head serves a group of query heads
            return [np.matmul(probabilities, values).astype(q.dtype), *(np.asarray(o) for o in outputs[1:])]
        return [np.asarray(o) for o in outputs]


@op("RotaryEmbedding", since=23)
class RotaryEmbedding(Op):
    """Rotates the first ``rotary_embedding_dim`` features of every head by the cos/sin cache (rows chosen by
    ``position_ids`` when given), halves or interleaved pairs; X is [B, H, S, D] or [B, S, H*D] with num_heads."""

    @classmethod
    def infer(cls, node, inputs, values):
        x = inputs[0]
        if x.rank not in (3, 4):
            raise ShapeInferenceError(f"RotaryEmbedding: X must be 3-D or 4-D, got {x}")
        if x.rank == 3 and not node.attr("num_heads"):
            raise ShapeInferenceError("RotaryEmbedding: 3-D input needs num_heads")
        return [TensorType(x.dtype, x.shape)]

    @classmethod
    def reference(cls, node, x, cos_cache, sin_cache, position_ids=None):
        from onnx.reference.ops.op_rotary_embedding import rotary_embedding
        return [np.asarray(rotary_embedding(x, cos_cache, sin_cache, position_ids=position_ids,
                                            interleaved=node.attr("interleaved", 0),
                                            rotary_embedding_dim=node.attr("rotary_embedding_dim", 0),
                                            num_heads=node.attr("num_heads", 0))).astype(x.dtype)]
