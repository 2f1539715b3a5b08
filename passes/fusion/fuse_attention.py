"""fuse-attention: MatMul(Q, Kᵀ) -> scale -> + mask -> Softmax -> MatMul(·, V) becomes one Attention op (a row of
scores at a time, never the whole score tensor; PyTorch's Where(IsNaN(P), 0, P) after the softmax becomes the op's
``nan_probabilities_to_zero``), and the Q/K/V projections of one input — MatMuls by constant
weights, each with its bias — become one GEMM over the concatenated weights whose epilogue adds the biases and
splits the product (AIB)."""
from __future__ import annotations

import dataclasses

import numpy as np

from sdflow.ir import Graph, lookup_op
from sdflow.ir.ops.fused import Fused, Program, Step
from sdflow.ir.types import TensorType
from ..infra import Pass, PassContext, PassResult, register_pass
from ._rewrite import Topology, scalar_value

# Kᵀ = Transpose(K', perm) with K' laid out [B, S, H, D] or already [B, H, S, D]: the perm that gives [B, H, S, D].
_KEY_LAYOUTS = {(0, 2, 3, 1): (0, 2, 1, 3), (0, 1, 3, 2): None}


@register_pass
@dataclasses.dataclass(frozen=True)
class FuseAttention(Pass):
    """MatMul(Q,Kᵀ)·scale+mask -> Softmax -> MatMul(V) => Attention; x·Wq+bq, x·Wk+bk, x·Wv+bv => one GEMM."""

    name = "fuse-attention"
    merge_projections: bool = True

    def apply(self, graph: Graph, ctx: PassContext) -> PassResult:
        notes: list[str] = []
        attentions = 0
        topology = Topology(graph)
        for node in list(topology.order):
            if node.op_type == "MatMul" and not node.domain_name and node in topology.order:
                match = _match_scores(graph, topology, node)
                if isinstance(match, str):
                    if match:
                        notes.append(f"{node.label}: no attention, {match}")
                    continue
                _replace_attention(graph, match)
                attentions += 1
                topology = Topology(graph)
        merged = self._merge_projections(graph, notes) if self.merge_projections else 0
        return PassResult(bool(attentions or merged), {"attentions": attentions, "merged_projections": merged},
                          notes if ctx.explain else [])

    @staticmethod
    def _merge_projections(graph: Graph, notes: list[str]) -> int:
        merged, declined = 0, set()
        while True:
            topology = Topology(graph)
            for tensor, readers in topology.consumers.items():
                projections = [r for r in readers if r.op_type == "MatMul" and not r.domain_name
                               and graph.node_inputs(r)[0] == tensor and _constant_weight(graph, r)]
                if len(projections) < 2 or tensor in declined:
                    continue
                widths = {graph.tensor_type(graph.node_inputs(p)[1]).shape[1] for p in projections}
                biases = [_bias_of(graph, topology, p) for p in projections]
                if len(widths) != 1:
                    notes.append(f"{tensor}: projections of different widths {sorted(widths)} are not merged")
                elif any(b is None for b in biases) and not all(b is None for b in biases):
                    notes.append(f"{tensor}: only some projections add a bias; not merged")
                else:
                    _merge(graph, tensor, projections, biases)
                    merged += 1
                    break
                declined.add(tensor)
            else:
                return merged


def _constant_weight(graph: Graph, matmul) -> bool:
    a, b = graph.node_inputs(matmul)
    a_type, b_type = graph.tensor_type(a), graph.tensor_type(b)
    return graph.is_constant(b) and b_type.rank == 2 and a_type.rank >= 2 and a_type.dtype.name == "float32"


def _bias_of(graph: Graph, topology: Topology, matmul):
    """(Add node, bias constant) when the product's one reader adds a constant [N] vector."""
    product = graph.node_outputs(matmul)[0]
    add = topology.only_consumer(product)
    if add is None or add.op_type != "Add":
        return None
    other = [t for t in graph.node_inputs(add) if t != product]
    width = graph.tensor_type(product).shape[-1]
    if len(other) != 1 or not graph.is_constant(other[0]) or graph.tensor_type(other[0]).shape != (width, ):
        return None
    return add, other[0]


def _step(op_type: str, opset: int, label: str, connectors, args, results, **attributes) -> Step:
    node = lookup_op("", op_type, opset).node_class(label, inputs=connectors[0], outputs=connectors[1],
                                                   opset=opset, **attributes)
    return Step.of(node, args, results)


def _merge(graph: Graph, tensor: str, projections: list, biases: list) -> None:
    weights = np.concatenate([graph.constant(graph.node_inputs(p)[1]) for p in projections], axis=1)
    inputs = [tensor, graph.add_constant(f"{projections[0].label}_qkv_weight", weights)]
    steps = [_step("MatMul", 13, "qkv", (["A", "B"], ["Y"]), ["in0", "in1"], ["s0.0"])]
    outputs = [graph.node_outputs(p)[0] for p in projections]
    last = "s0.0"
    if biases[0] is not None:
        inputs.append(graph.add_constant(f"{projections[0].label}_qkv_bias",
                                         np.concatenate([graph.constant(b) for _, b in biases])))
        steps.append(_step("Add", 14, "qkv_bias", (["A", "B"], ["C"]), ["s0.0", "in2"], ["s1.0"]))
        outputs = [graph.node_outputs(add)[0] for add, _ in biases]
        last = "s1.0"
    count = len(projections)
    k = len(steps)
    steps.append(_step("Split", 18, "qkv_split", (["input", ""], [f"outputs_{i}" for i in range(count)]),
                       [last, None], [f"s{k}.{i}" for i in range(count)], axis=-1, num_outputs=count))
    program = Program(tuple(steps), tuple(f"s{k}.{i}" for i in range(count)))
    fused = Fused.make(f"qkv_{projections[0].label}", program, len(inputs))
    old = [*projections, *(add for add, _ in filter(None, biases))]
    graph.replace_ops(old, [(fused, inputs, outputs)])


def _match_scores(graph: Graph, topology: Topology, context_matmul):
    """The parts of the attention chain ending in ``context_matmul`` (a dict), or why not ('' when not even
    near one)."""
    probs, v = graph.node_inputs(context_matmul)
    nan_rule = _nan_rule(graph, topology, probs)
    if nan_rule is not None:  # PyTorch's SDPA export: Where(IsNaN(P), 0, P) between the softmax and the product
        if topology.only_consumer(probs) is not context_matmul:
            return "the probabilities are read by other ops too"
        probs = graph.node_inputs(nan_rule[1])[0]
    softmax = topology.producer.get(probs)
    if softmax is None or softmax.op_type != "Softmax":
        return ""
    if set(topology.consumers.get(probs, ())) != set(nan_rule or [context_matmul]) or probs in topology.outputs:
        return "the probabilities are read by other ops too"
    rank = graph.tensor_type(probs).rank
    if rank != 4 or softmax.attr("axis", -1) not in (-1, 3) or graph.tensor_type(probs).dtype.name != "float32":
        return "the softmax is not over the last axis of a 4-D float32 tensor"
    removed, scale, mask = [softmax, context_matmul, *(nan_rule or ())], None, None
    tensor = graph.node_inputs(softmax)[0]
    while True:
        producer = topology.producer.get(tensor)
        if producer is None or topology.only_consumer(tensor) is None:
            return "the scores are read by other ops too"
        inputs = graph.node_inputs(producer)
        if producer.op_type == "Add" and mask is None:
            mask = next((t for t in inputs if not _from_a_product(graph, topology, t)), None)
            scores = [t for t in inputs if t != mask]
            if mask is None or len(scores) != 1:
                return "the scores are added to something that is not a mask"
            tensor = scores[0]
        elif producer.op_type in ("Mul", "Div") and scale is None and \
                scalar_value(graph.constants, inputs[1]) is not None:
            factor = scalar_value(graph.constants, inputs[1])
            scale = factor if producer.op_type == "Mul" else 1.0 / factor
            tensor = inputs[0]
        elif producer.op_type == "MatMul":
            break
        else:
            return f"{producer.op_type} {producer.label} between the scores and the softmax"
        removed.append(producer)
    scores_matmul = producer
    q, key_t = graph.node_inputs(scores_matmul)
    # PyTorch's scaled_dot_product_attention export scales Q and Kᵀ each by sqrt(scale) before the product.
    scale = 1.0 if scale is None else scale
    q, q_factor, q_scaling = _unscaled(graph, topology, q, scores_matmul)
    key_t, k_factor, k_scaling = _unscaled(graph, topology, key_t, scores_matmul)
    scale *= q_factor * k_factor
    removed += [n for n in (q_scaling, k_scaling) if n is not None]
    key_reader = k_scaling or scores_matmul
    if topology.only_consumer(key_t) is not key_reader:
        return "Kᵀ is not a transpose of the keys read only by the scores"
    transposing = _key_transpose(graph, topology, key_t)
    if transposing is None:
        return "Kᵀ is not a transpose of the keys read only by the scores"
    key_source, perm, transposes = transposing
    if mask is not None and graph.tensor_type(mask).dtype.name != "float32":
        return "the mask is not an additive float32 mask"
    return {"q": q, "key_source": key_source, "key_perm": _KEY_LAYOUTS[perm], "v": v,
            "mask": mask, "scale": scale, "remove": [*removed, scores_matmul, *transposes], "nan_rule": bool(nan_rule),
            "out": graph.node_outputs(context_matmul)[0], "label": scores_matmul.label}


def _key_transpose(graph: Graph, topology: Topology, key_t: str):
    """(the keys, the 4-D perm of _KEY_LAYOUTS that gives Kᵀ from them, the nodes that do it) when ``key_t`` is a
    Transpose of the keys, or the form PyTorch's dynamo exporter writes for [B, H, S, D] keys:
    Reshape to [B * H, S, D], Transpose (0, 2, 1), Reshape to [B, H, D, S] (each read only by the next); else None."""
    producer = topology.producer.get(key_t)
    if producer is None:
        return None
    if producer.op_type == "Transpose":
        perm = tuple(producer.attr("perm") or ())
        return (graph.node_inputs(producer)[0], perm, [producer]) if perm in _KEY_LAYOUTS else None
    if producer.op_type != "Reshape":
        return None
    transpose = topology.producer.get(graph.node_inputs(producer)[0])
    if transpose is None or transpose.op_type != "Transpose" or tuple(transpose.attr("perm") or ()) != (0, 2, 1):
        return None
    flatten = topology.producer.get(graph.node_inputs(transpose)[0])
    if flatten is None or flatten.op_type != "Reshape":
        return None
    keys = graph.node_inputs(flatten)[0]
    chain = [graph.node_outputs(flatten)[0], graph.node_outputs(transpose)[0]]
    if any(topology.only_consumer(t) is None for t in chain):
        return None
    source, flat, flipped, target = (graph.tensor_type(t).shape for t in (keys, *chain, key_t))
    if len(source) != 4 or len(flat) != 3 or len(target) != 4:
        return None
    b, h, s, d = source
    if list(flat[1:]) != [s, d] or list(flipped[1:]) != [d, s] or list(target) != [b, h, d, s]:
        return None
    return keys, (0, 1, 3, 2), [producer, transpose, flatten]


def _nan_rule(graph: Graph, topology: Topology, tensor: str):
    """(Where, IsNaN) when ``tensor`` is Where(IsNaN(P), 0, P) of one tensor P (PyTorch's export of
    scaled_dot_product_attention zeroes the NaN probabilities of fully masked rows this way), else None."""
    where = topology.producer.get(tensor)
    if where is None or where.op_type != "Where":
        return None
    condition, zero, probs = graph.node_inputs(where)
    isnan = topology.producer.get(condition)
    if isnan is None or isnan.op_type != "IsNaN" or graph.node_inputs(isnan)[0] != probs \
            or topology.only_consumer(condition) is not where or scalar_value(graph.constants, zero) != 0:
        return None
    return where, isnan


def _unscaled(graph: Graph, topology: Topology, tensor: str, reader):
    """(the tensor before a scaling, the factor, the scaling node) when ``tensor`` is a Mul/Div by a scalar constant
    read only by ``reader``; else (tensor, 1.0, None)."""
    producer = topology.producer.get(tensor)
    if producer is None or producer.op_type not in ("Mul", "Div") or topology.only_consumer(tensor) is not reader:
        return tensor, 1.0, None
    inputs = graph.node_inputs(producer)
    factor = scalar_value(graph.constants, inputs[1])
    if factor is None:
        return tensor, 1.0, None
    return inputs[0], (factor if producer.op_type == "Mul" else 1.0 / factor), producer


def _from_a_product(graph: Graph, topology: Topology, tensor: str) -> bool:
    """Whether ``tensor`` is a MatMul's result, or one scaled by constants (Mul/Div by a scalar): the scores side of
    the Add before the softmax. The other side is the additive mask, however the exporter built it: a graph input,
    a Where over a boolean mask, or Hugging Face's (1 - mask) * -10000 (a Mul by a scalar, but of no product)."""
    while True:
        producer = topology.producer.get(tensor)
        if producer is None:
            return False
        if producer.op_type == "MatMul":
            return True
        inputs = graph.node_inputs(producer)
        if producer.op_type not in ("Mul", "Div") or scalar_value(graph.constants, inputs[1]) is None:
            return False
        tensor = inputs[0]


def _replace_attention(graph: Graph, match: dict) -> None:
    key, new = match["key_source"], []
    if match["key_perm"] is not None:
        source = graph.tensor_type(key)
        key_type = TensorType(source.dtype, [source.shape[p] for p in match["key_perm"]])
        transposed = graph.add_tensor(f"{key}_heads", key_type)
        transpose = lookup_op("", "Transpose", 13).node_class(f"{match['label']}_keys", inputs=["data"],
                                                             outputs=["transposed"], opset=13,
                                                             perm=list(match["key_perm"]))
        new.append((transpose, [key], [transposed]))
        key = transposed
    attention = lookup_op("", "Attention", 23).node_class(
        f"attention_{match['label']}", inputs=["Q", "K", "V", "attn_mask" if match["mask"] else "", "", ""],
        outputs=["Y", "", "", ""], opset=23, scale=match["scale"],
        **({"nan_probabilities_to_zero": 1} if match["nan_rule"] else {}))
    new.append((attention, [match["q"], key, match["v"], match["mask"], None, None], [match["out"], None, None, None]))
    graph.replace_ops(match["remove"], new)
