"""Fused ops (``sdflow.ir.ops.fused``) as one kernel each. Every element-wise step becomes one C++ statement on a
local, so the values between steps live in registers:

- ``elementwise``: one parallel map over the output; inputs broadcast through their memlets.
- ``rows``: one parallel map over the rows; the prologue writes the row op's input into the output row, then
  LayerNorm/Softmax runs on that row in place (one read of each input, one write of the output).
- ``conv``: the convolution (``nn.conv_code``) with the epilogue applied to each output plane in place.
- ``matmul``, ``matmul_int8``, ``matmul_nbits``: a GEMM (``codegen/kernels/gemm.h``; BLAS for double; ``qgemm.h``
  for the int8 product; ``nbits.h`` for a 4-bit weight) into the output (before a Split: one call per
  output, each on its column block of the concatenated weight, packed as its own block when the weight is a
  constant), then one parallel map over the rows applies the epilogue in place while the row is in cache.
"""
from __future__ import annotations

import re

import dace
from dace.libraries.blas.environments.openblas import OpenBLAS

from sdflow.ir import CompileError
from sdflow.ir.ops.fused import Program
from sdflow.ir.types import TensorType, dace_dtype
from ._expansion import Ctx, add_map, cexpr, expansion, index_ranges, product
from ._math import vectorizable
from .elementwise import broadcast_index, expression
from .linalg import GEMM_INCLUDES, PACKED, _gemm_call, sgemm_call, uses_gemm_h
from .nn import CONV_INCLUDES, conv_code, conv_depthwise_code, packed_input
from .lowp import element_type
from .quantization import NBITS_INCLUDE, NBITS_PACKED, QGEMM_INCLUDE, QGEMM_PACKED, qgemm_call
from .reduction import REDUCE_INCLUDE, layer_norm_row_code, softmax_row_code


def _local(value: str) -> str:
    """The C++ local of a step's result (``s3.0`` -> ``s3_0_``)."""
    return value.replace(".", "_") + "_"


def _statements(steps, types: dict[str, TensorType], value) -> str:
    """One ``const T s<k>_<o>_ = ...;`` per element-wise step; ``value(name)`` is the C++ of an input."""
    lines, defined = [], set()
    for step in steps:
        node = step.node()
        positions = [p for p, arg in enumerate(step.args) if arg]
        if step.op_type in ("Expand", "CastLike"):
            positions = [0]  # not read per element
        code = expression(node, positions, types[step.args[0]].dtype.kind)

        def argument(match, step=step):
            name = step.args[int(match.group(1))]
            return f"({_local(name) if name in defined else value(name)})"
        code = re.sub(r"\bin(\d+)\b", argument, code)
        ctype = dace_dtype(types[step.results[0]].dtype).ctype
        lines.append(f"const {ctype} {_local(step.results[0])} = {code.replace('{T}', ctype)};")
        defined.add(step.results[0])
    return "\n".join(lines)


def _row_subset(in_shape, row_shape) -> tuple[str, bool]:
    """Memlet subset of an input broadcast against rows of ``row_shape`` (map indices i<k> over the outer dims),
    and whether it varies along the row (else every element of the row reads its element 0)."""
    offset = len(row_shape) - len(in_shape)
    parts = []
    for k, dim in enumerate(in_shape):
        axis = offset + k
        if axis == len(row_shape) - 1:
            parts.append(f"0:{dim}" if dim != 1 else "0")
        else:
            parts.append(f"i{axis}" if dim != 1 or row_shape[axis] == 1 else "0")
    along = bool(in_shape) and in_shape[-1] != 1
    return ", ".join(parts) or "0", along


def _used_inputs(program: Program, skip=()) -> list[str]:
    """The fused op's inputs (``in<i>``) that its steps read, in order, less ``skip``."""
    return sorted({a for s in program.steps for a in s.args if a and a.startswith("in") and a not in skip},
                  key=lambda a: int(a[2:]))


def _external_rows(program: Program, types, row_shape, index: str, skip=()) -> tuple[dict, dict, list]:
    """Row memlets {x<i>: subset} of the inputs the element-wise steps read, their C++ element at ``index``, and
    the connectors to type as pointers."""
    memlets, elements = {}, {}
    for name in _used_inputs(program, skip):
        subset, along = _row_subset(types[name].shape, row_shape)
        memlets[f"x{name[2:]}"] = f"{name}[{subset}]"
        elements[name] = f"x{name[2:]}[{index if along else '0'}]"
    return memlets, elements, list(memlets)


def _check_types(types: dict[str, TensorType]) -> None:
    for name, ttype in types.items():
        if ttype.dtype.name == "float16":
            raise CompileError(f"Fused: value {name} is float16; fused kernels compute in the value types")


def _elementwise(ctx: Ctx, program: Program, types) -> dace.SDFG:
    out_shape = ctx.shape("out0")
    inputs = {f"x{n[2:]}": f"{n}[{broadcast_index(types[n].shape, out_shape)}]" for n in _used_inputs(program)}
    code = _statements(program.steps, types, lambda name: f"x{name[2:]}")
    outputs = {}
    for j, value in enumerate(program.outputs):
        outputs[f"o{j}"] = f"out{j}[{', '.join(f'i{k}' for k in range(len(out_shape))) or '0'}]"
        code += f"\no{j} = {_local(value)};"
    sdfg, state = ctx.nested()
    add_map(state, "fused", index_ranges(out_shape), inputs, vectorizable(code, _math_type(types)), outputs)
    return sdfg


def _rows(ctx: Ctx, program: Program, types) -> dace.SDFG:
    row_step = program.steps[-1]
    shape = list(types[row_step.args[0]].shape)
    n = cexpr(shape[-1])
    ctype = dace_dtype(types[row_step.results[0]].dtype).ctype
    node = row_step.node()
    memlets, elements, pointers = _external_rows(program, types, shape, "j_")
    prologue = _statements(program.steps[:-1], types, elements.__getitem__)
    outputs = {"y": f"out{program.outputs.index(row_step.results[0])}[{_row_subset(shape, shape)[0]}]"}
    stores = [f"y[j_] = {_local(row_step.args[0])};"]
    for j, value in enumerate(program.outputs):
        if value != row_step.results[0]:
            outputs[f"o{j}"] = f"out{j}[{_row_subset(shape, shape)[0]}]"
            stores.append(f"o{j}[j_] = {_local(value)};")
    if row_step.op_type == "LayerNormalization":
        if node.attr("axis", -1) not in (-1, len(shape) - 1):
            raise CompileError("Fused: LayerNormalization over more than the last axis")
        # Scale and bias when given: (pointer, step along the row: 1, or 0 for one value).
        terms = [elements[a] if a else None for a in row_step.args[1:3]] + [None, None]
        scale, bias = [(term.split("[")[0], 1 if term.endswith("[j_]") else 0) if term else None for term in terms[:2]]
        row = layer_norm_row_code(node, n, scale, bias)
    else:
        row = softmax_row_code("Softmax", n, 1, ctype)
    code = (f"for (int64_t j_ = 0; j_ < {n}; ++j_) {{\n{prologue}\n{' '.join(stores)}\n}}\n"
            f"{{\nconst {ctype}* x = y;\n{row}\n}}")
    sdfg, state = ctx.nested()
    add_map(state, row_step.op_type.lower(), index_ranges(shape[:-1]), memlets, vectorizable(code, _math_type(types)),
            outputs, pointers=pointers + list(outputs), includes=REDUCE_INCLUDE)
    return sdfg


def matmul_blocks(program: Program, types) -> list[tuple[int, object, object]]:
    """(output index, first column, width) of each output of a fused MatMul: the whole product, or each of the
    final Split's column blocks."""
    steps = list(program.steps[1:])
    split = steps.pop() if steps and steps[-1].op_type == "Split" else None
    final = steps[-1].results[0] if steps else program.steps[0].results[0]
    blocks, low = [], 0
    for result in (split.results if split is not None else [final]):
        width = types[result].shape[-1]
        blocks.append((program.outputs.index(result), low, width))
        low = low + width
    return blocks


def _matmul(ctx: Ctx, program: Program, types) -> dace.SDFG:
    """GEMM into each output (a Split's outputs are column blocks of the product: one GEMM call per block of the
    concatenated weight, straight into that output), then the epilogue on each output row in place."""
    from .packing import nbits_group, nbits_offsets, nbits_width, packed_offsets, qgemm_offsets  # (imports this)
    dq = program.steps[0] if program.kind == "matmul_nbits" else None  # a 4-bit weight's DequantizeLinear
    matmul, steps = (program.steps[1], list(program.steps[2:])) if dq else (program.steps[0], list(program.steps[1:]))
    int8 = matmul.op_type == "QuantizedMatMul"
    if steps and steps[-1].op_type == "Split":
        steps.pop()
    a_type, b_type = types[matmul.args[0]], types[matmul.args[1]]
    if b_type.rank != 2 or a_type.rank < 2:
        raise CompileError("Fused: a MatMul epilogue needs a 2-D weight and an operand of rank >= 2")
    product_shape = list(types[matmul.results[0]].shape)
    rows, k, n = cexpr(product(a_type.shape[:-1])), cexpr(a_type.shape[-1]), cexpr(b_type.shape[-1])
    ctype = dace_dtype(a_type.dtype).ctype
    final = steps[-1].results[0] if steps else matmul.results[0]
    blocks = matmul_blocks(program, types)
    sdfg, gemm_state = ctx.nested()
    a_in, b_in = matmul.args[0], matmul.args[1]
    ours = uses_gemm_h(ctx, ctype)
    packed = ours and PACKED in ctx.inputs
    extra = []  # (C++ name, input) of the int8 product's scales and bias
    if dq is not None:
        if NBITS_PACKED not in ctx.inputs:
            raise CompileError("Fused: a 4-bit weight reaches codegen without its packed form (packing.prepack)")
        packed = True
        group = nbits_group(types[dq.args[0]].shape, types[dq.args[1]].shape, dq.node())
        bits = nbits_width(types[dq.args[0]].dtype, dq.node())
        offsets = nbits_offsets(int(b_type.shape[0]), [int(w) for _, _, w in blocks], group, bits)
        calls = [f"sdflow_kernels::nbits::matmul({rows}, {cexpr(w)}, {k}, _a, {k}, _p + {offset}, {group}, {bits}, "
                 f"_c{o}, {cexpr(w)});" for (o, _, w), offset in zip(blocks, offsets)]
    elif int8:
        packed = QGEMM_PACKED in ctx.inputs
        scale_in, bias_in, a_scale_in, a_zero_in = (list(matmul.args) + [None] * 4)[2:6]
        per_column = list(types[scale_in].shape) != [1]
        extra = [("_s", scale_in)] + ([("_bias", bias_in)] if bias_in else []) + (
            [("_as", a_scale_in), ("_az", a_zero_in)] if a_scale_in else [])
        offsets = qgemm_offsets(int(b_type.shape[0]), [int(w) for _, _, w in blocks]) if packed else None
        calls = [qgemm_call(rows, cexpr(w), k, "_a", f"_b + {cexpr(lo)}", n, f"_p + {offsets[i]}" if packed else None,
                            f"_s + {cexpr(lo)}" if per_column else "_s", per_column,
                            f"_bias + {cexpr(lo)}" if bias_in else None, f"_c{o}", cexpr(w),
                            bool(matmul.node().attr("per_row", 0)), "_as" if a_scale_in else None,
                            "_az" if a_scale_in else None)
                 for i, (o, lo, w) in enumerate(blocks)]
    elif packed:
        offsets = packed_offsets(int(b_type.shape[0]), [int(w) for _, _, w in blocks])
        calls = [sgemm_call(rows, cexpr(w), k, "_a", k, None, None, f"_c{o}", cexpr(w), packed=f"_p + {offset}")
                 for (o, _, w), offset in zip(blocks, offsets)]
    elif ours:
        calls = [sgemm_call(rows, cexpr(w), k, "_a", k, f"_b + {cexpr(lo)}", n, f"_c{o}", cexpr(w))
                 for o, lo, w in blocks]
    else:
        calls = [_gemm_call(ctype, False, False, rows, cexpr(w), k, 1, "_a", k, f"_b + {cexpr(lo)}", n, 0, f"_c{o}",
                            cexpr(w)) for o, lo, w in blocks]
    pointer = dace.pointer(dace_dtype(a_type.dtype))
    packed_input = NBITS_PACKED if dq is not None else QGEMM_PACKED if int8 else PACKED
    operands = [("_a", a_in), (("_p", packed_input) if packed else ("_b", b_in))] + extra
    tasklet = gemm_state.add_tasklet("gemm", {c: dace.pointer(sdfg.arrays[array].dtype) for c, array in operands},
                                     {f"_c{o}": pointer for o, _, _ in blocks}, "\n".join(calls),
                                     language=dace.Language.CPP,
                                     code_global=NBITS_INCLUDE if dq is not None else
                                     QGEMM_INCLUDE if int8 else GEMM_INCLUDES)
    tasklet.environments = {OpenBLAS.full_class_path()}
    for connector, array in operands:
        gemm_state.add_edge(gemm_state.add_read(array), None, tasklet, connector,
                            dace.Memlet.from_array(array, sdfg.arrays[array]))
    for o, _, _ in blocks:
        gemm_state.add_edge(tasklet, f"_c{o}", gemm_state.add_write(f"out{o}"), None,
                            dace.Memlet.from_array(f"out{o}", sdfg.arrays[f"out{o}"]))
    if not steps:
        return sdfg
    epilogue_state = sdfg.add_state_after(gemm_state, "epilogue")
    memlets, elements, pointers = _external_rows(program, types, product_shape, "(j_ + low_)",
                                                 skip=(a_in, b_in) + tuple(a for _, a in extra)
                                                 + (tuple(a for a in dq.args if a) if dq is not None else ()))
    elements[matmul.results[0]] = "a_"
    code = _statements(steps, types, elements.__getitem__)
    outputs, loops = {}, []
    for o, lo, w in blocks:
        outputs[f"y{o}"] = f"out{o}[{_row_subset(types[program.outputs[o]].shape, product_shape)[0]}]"
        # The product's element is read from the output row itself, which the epilogue then overwrites.
        loops.append(f"{{\nconst int64_t low_ = {cexpr(lo)};\nfor (int64_t j_ = 0; j_ < {cexpr(w)}; ++j_) {{\n"
                     f"const {ctype} a_ = y{o}[j_];\n{code}\ny{o}[j_] = {_local(final)};\n}}\n}}")
    add_map(epilogue_state, "epilogue", index_ranges(product_shape[:-1]), memlets,
            vectorizable("\n".join(loops), _math_type(types)), outputs, pointers=pointers + list(outputs))
    return sdfg


def _plane_element(pointer: str, shape, out_shape) -> str:
    """C++ of the element of an input (broadcast against the conv output ``out_shape``) at sample ``n_``,
    channel ``m_``, plane position ``p_`` (fuse-conv-epilogue admits whole planes or none)."""
    shape = [1] * (len(out_shape) - len(shape)) + list(shape)
    plane = product(shape[2:])
    index = []
    if shape[0] != 1:
        index.append(f"n_ * {cexpr(shape[1] * plane)}")
    if shape[1] != 1:
        index.append(f"m_ * {cexpr(plane)}")
    if shape[2:] == list(out_shape[2:]) and any(d != 1 for d in shape[2:]):
        index.append("p_")
    return f"{pointer}[{' + '.join(index) or '0'}]"


def _conv_epilogue(ctx: Ctx, types, conv, steps) -> tuple[str, str]:
    """``conv_code``'s epilogue (statements, final expression) for the element-wise ``steps`` after ``conv``."""
    shape = types[conv.results[0]].shape
    elements = {name: _plane_element(ctx.ptr(name), types[name].shape, shape)
                for step in steps for name in step.args if name and name.startswith("in")}
    elements[conv.results[0]] = "a_"
    return _statements(steps, types, elements.__getitem__), _local(steps[-1].results[0]) if steps else "a_"


def _conv(ctx: Ctx, program: Program, types) -> dace.SDFG:
    conv, steps = program.steps[0], program.steps[1:]
    x, w, bias = (conv.args + (None,))[:3]
    epilogue = _conv_epilogue(ctx, types, conv, steps)
    packed = packed_input(ctx)
    code = conv_code(conv.node(), types[x].shape, types[w].shape, ctx.ptr(x), ctx.ptr(w), ctx.ptr("out0"),
                     ctx.ptr(bias) if bias else None, epilogue, packed, implementation=ctx.node.implementation or "")
    return ctx.tasklet(vectorizable(code, "float"), includes=CONV_INCLUDES,
                       unread=(w,) if packed else ())  # the direct kernel reads the packed copy only


def _conv_depthwise(ctx: Ctx, program: Program, types) -> dace.SDFG:
    """A 1x1 convolution and its epilogue, then a depthwise convolution of the result and its epilogue
    (fuse-conv-depthwise): ``nn.conv_depthwise_code``."""
    second = next(k for k, step in enumerate(program.steps) if k and step.op_type == "Conv")
    conv1, steps1 = program.steps[0], program.steps[1:second]
    conv2, steps2 = program.steps[second], program.steps[second + 1:]
    x, w1, bias1 = (conv1.args + (None,))[:3]
    _, w2, bias2 = (conv2.args + (None,))[:3]
    packed = packed_input(ctx)
    code = conv_depthwise_code(conv1.node(), conv2.node(), types[x].shape, types[w1].shape,
                               types[conv1.results[0]].shape, types[w2].shape, ctx.ptr(x), ctx.ptr(w1), ctx.ptr(w2),
                               ctx.ptr("out0"), ctx.ptr(bias1) if bias1 else None, ctx.ptr(bias2) if bias2 else None,
                               _conv_epilogue(ctx, types, conv1, steps1), _conv_epilogue(ctx, types, conv2, steps2),
                               packed, implementation=ctx.node.implementation or "")
    return ctx.tasklet(vectorizable(code, "float"), includes=CONV_INCLUDES,
                       unread=(w1,) if packed else ())  # the direct kernel reads the packed copy only


@expansion("Fused", environments=[OpenBLAS])
def fused(ctx: Ctx):
    program = ctx.node.parsed
    inputs = []
    for position in range(len(ctx.node.onnx_inputs)):
        connector = ctx.connector("in", position)
        desc = ctx.desc(connector)
        # (the element type the graph gave it: a 4-bit weight's codes are stored as bytes)
        inputs.append(TensorType(element_type(desc), list(desc.shape)))
    types = program.types(inputs)
    _check_types(types)
    sdfg = {"elementwise": _elementwise, "rows": _rows, "matmul": _matmul, "matmul_int8": _matmul,
            "matmul_nbits": _matmul, "conv": _conv,
            "conv_depthwise": _conv_depthwise}[program.kind](
        ctx, program, types)
    for state in sdfg.states():
        for node in state.nodes():
            if isinstance(node, dace.nodes.Tasklet):
                # Marks the kernel in the generated C++ (what `sdflow report` claims can be checked there).
                node.code.as_string = f"{marker(program)}\n{node.code.as_string}"
    return sdfg


def marker(program: Program) -> str:
    """The comment that opens every tasklet of a fused kernel in the generated code."""
    return f"// sdflow fused kernel ({program.kind}): {program.summary()}"


def _math_type(types) -> str:
    """The type the inline float math may serve: float unless some value is double (whose math stays libm's)."""
    return "double" if any(t.dtype.name == "float64" for t in types.values()) else "float"
