"""data-movement: for every op, the bytes it reads and writes at its boundary (every input read once, every output
written once), its flop and arithmetic intensity, symbolic in the model's dims. The operator-boundary model of
*Data Movement Is All You Need* (arXiv 2007.00072): what an op costs in memory traffic when it runs as its own
kernel. Reshapes are views (no bytes): they change how a buffer is indexed, not its contents. Gathers and slices
read one element of their data per output element (an embedding lookup reads its rows, not the table); Shape and
Size read no data. Sub-byte elements count as packed (4-bit codes two per byte; a weight the kernel packs in 3 bits,
3/8 of a byte).

Flop counts one per multiply or add of a contraction (2·M·N·K for a GEMM), one per output element of an
element-wise op (a transcendental counts as one), and the per-element work of the normalisations below."""
from __future__ import annotations

import dataclasses

import ml_dtypes
import numpy as np
import sympy

from sdflow.ir import Graph
from sdflow.ir.ops.elementwise import ELEMENTWISE_OPS
from sdflow.ir.ops.fused import DOMAIN as FUSED_DOMAIN
from sdflow.ir.ops.linalg import matmul_shapes
from sdflow.ir.types import TensorType

__all__ = ["OpTraffic", "Totals", "operator_traffic", "totals", "op_flop", "evaluate", "VIEW_OPS"]

_SUB_BYTE = {np.dtype(t): bits for t, bits in ((ml_dtypes.int4, 4), (ml_dtypes.uint4, 4), (ml_dtypes.float4_e2m1fn, 4),
                                                (ml_dtypes.int2, 2), (ml_dtypes.uint2, 2))}
VIEW_OPS = ("Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity")
# Flop per element of the (first) input, for row-wise ops: max, subtract + exp, sum, divide; mean, variance,
# normalise, scale, shift.
_PER_ELEMENT = {"Softmax": 5, "LogSoftmax": 5, "LayerNormalization": 8, "RMSNormalization": 6,
                "BatchNormalization": 4, "InstanceNormalization": 8, "GroupNormalization": 8}
_REDUCTIONS = ("ReduceSum", "ReduceMean", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1", "ReduceL2",
               "ReduceSumSquare", "ReduceLogSum", "ReduceLogSumExp", "ArgMax", "ArgMin", "GlobalAveragePool",
               "GlobalMaxPool", "GlobalLpPool")


@dataclasses.dataclass(frozen=True)
class OpTraffic:
    label: str
    op_type: str
    bytes_read: sympy.Expr
    bytes_written: sympy.Expr
    flop: sympy.Expr = sympy.Integer(0)
    kernel: str = ""  # what a fused op runs (MatMul+Add+Gelu), else ""

    @property
    def bytes_moved(self) -> sympy.Expr:
        return self.bytes_read + self.bytes_written

    def evaluate(self, dims: dict[str, int]) -> tuple[int, int]:
        """(bytes read, bytes written) with the symbolic dims bound to ``dims``; a dim not given raises."""
        return evaluate(self.bytes_read, dims), evaluate(self.bytes_written, dims)

    def evaluate_flop(self, dims: dict[str, int]) -> int:
        return evaluate(self.flop, dims)

    def intensity(self, dims: dict[str, int]) -> float:
        """Flop per byte moved (0 for an op that moves nothing)."""
        moved = sum(self.evaluate(dims))
        return self.evaluate_flop(dims) / moved if moved else 0.0


@dataclasses.dataclass(frozen=True)
class Totals:
    ops: int
    bytes_read: int
    bytes_written: int
    flop: int

    @property
    def bytes_moved(self) -> int:
        return self.bytes_read + self.bytes_written

    @property
    def intensity(self) -> float:
        return self.flop / self.bytes_moved if self.bytes_moved else 0.0


def operator_traffic(graph: Graph) -> list[OpTraffic]:
    """One record per op node, in topological order."""
    records = []
    for node in graph.op_nodes():
        inputs = [graph.tensor_type(t) if t else None for t in graph.node_inputs(node)]
        outputs = [graph.tensor_type(t) if t else None for t in graph.node_outputs(node)]
        if node.op_type in VIEW_OPS and not node.domain_name:
            read = written = sympy.Integer(0)
        else:
            read = sum((_input_bytes(node, k, inputs, outputs) for k, t in enumerate(inputs) if t), sympy.Integer(0))
            written = sum((_bytes(t) for t in outputs if t), sympy.Integer(0))
        records.append(OpTraffic(node.label, node.op_type, read, written, op_flop(node, inputs, outputs),
                                 getattr(node, "kernel", "") if node.domain_name else ""))
    return records


def totals(records: list[OpTraffic], dims: dict[str, int]) -> Totals:
    read = written = flop = 0
    for record in records:
        r, w = record.evaluate(dims)
        read, written, flop = read + r, written + w, flop + record.evaluate_flop(dims)
    return Totals(len(records), read, written, flop)


def op_flop(node, inputs: list[TensorType | None], outputs: list[TensorType | None]) -> sympy.Expr:
    """The flop of one op node (a Fused op: the sum over its steps)."""
    op_type = node.op_type
    if node.domain_name == FUSED_DOMAIN:
        program = node.parsed
        types = program.types(inputs)
        return sum((op_flop(step.node(), [types[a] if a else None for a in step.args],
                            [types[r] if r else None for r in step.results]) for step in program.steps),
                   sympy.Integer(0))
    out = outputs[0] if outputs and outputs[0] is not None else None
    if op_type == "MatMul":
        batch, m, k, n, _ = matmul_shapes(inputs[0].shape, inputs[1].shape)
        return 2 * _count(batch) * m * k * n
    if op_type == "Gemm":
        k = inputs[0].shape[0 if node.attr("transA", 0) else 1]
        return 2 * _count(out.shape) * k + (_count(out.shape) if len(inputs) > 2 and inputs[2] else 0)
    if op_type in ("Conv", "ConvTranspose"):
        # Each output (Conv) or input (ConvTranspose) element meets one weight slice [C/groups, kernel...].
        source = inputs[0] if op_type == "ConvTranspose" else out
        return 2 * _count(source.shape) * _count(inputs[1].shape[1:])
    if op_type == "Attention":
        q, k, v = inputs[:3]
        scores = _count(out.shape[:-1]) * (k.shape[-2] if k.rank == 4 else k.shape[1])
        head = q.shape[-1] if q.rank == 4 else q.shape[-1] / node.attr("q_num_heads")
        value = v.shape[-1] if v.rank == 4 else v.shape[-1] / node.attr("kv_num_heads")
        return sympy.expand(2 * scores * head + 2 * scores * value + 5 * scores)
    if op_type in _PER_ELEMENT:
        return _PER_ELEMENT[op_type] * _count(inputs[0].shape)
    if op_type in _REDUCTIONS:
        return _count(inputs[0].shape)
    if op_type in ELEMENTWISE_OPS and op_type not in ("Identity", "Expand", "Cast", "CastLike") and out is not None:
        return _count(out.shape)
    return sympy.Integer(0)


# Ops that read only part of their first input: one element of it per output element (a Gather of 128 token rows
# reads those rows, not the 30522-row table), or nothing but its shape.
_GATHERS = ("Gather", "GatherElements", "GatherND", "Slice")
_SHAPE_ONLY = ("Shape", "Size")


def _input_bytes(node, position: int, inputs: list, outputs: list) -> sympy.Expr:
    """The bytes ``node`` reads of its input ``position``."""
    if position == 0 and not node.domain_name and node.op_type in _SHAPE_ONLY:
        return sympy.Integer(0)
    if position == 0 and not node.domain_name and node.op_type in _GATHERS and outputs[0] is not None:
        return _count(outputs[0].shape) * _bits(inputs[0].dtype) / 8
    if node.domain_name == FUSED_DOMAIN and node.parsed.kind == "matmul_nbits":
        dequantize = node.parsed.steps[0]  # the weight's codes, as the kernel packs them (3 bits: code_bits)
        if dequantize.args[0] == f"in{position}" and dequantize.attributes.get("code_bits") == 3:
            return _count(inputs[position].shape) * sympy.Rational(3, 8)
    return _bytes(inputs[position])


def _count(shape) -> sympy.Expr:
    return sympy.Mul(*[sympy.sympify(d) for d in shape]) if shape else sympy.Integer(1)


def _bits(dtype) -> int:
    """Bits per element as stored: 4 for int4/uint4/float4 (two per byte), 2 for int2/uint2, else the item size."""
    dtype = np.dtype(dtype)
    if dtype in _SUB_BYTE:
        return _SUB_BYTE[dtype]
    return dtype.itemsize * 8


def _bytes(ttype: TensorType) -> sympy.Expr:
    return _count(ttype.shape) * _bits(ttype.dtype) / 8


def evaluate(expr, dims: dict[str, int]) -> int:
    """A symbolic byte or flop count with the dims bound to ``dims``; a dim not given raises KeyError."""
    expr = sympy.sympify(expr)
    value = expr.subs({s: dims[str(s)] for s in expr.free_symbols if str(s) in dims})
    if value.free_symbols:
        missing = ", ".join(sorted(str(s) for s in value.free_symbols))
        raise KeyError(f"no value for dim(s) {missing}")
    return int(sympy.ceiling(value))  # (packed sub-byte elements: a part-filled last byte counts whole)
