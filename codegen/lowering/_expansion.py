"""Infrastructure of op expansions: registering them on node classes, the per-expansion context, and C++
printing of symbolic integer expressions."""
from __future__ import annotations

import re

import dace
import sympy
from dace.transformation.transformation import ExpandTransformation

from sdflow.ir import Graph, known_values, semantics_of
from sdflow.ir.registry import registered_ops
from ._math import math_includes

__all__ = ["expansion", "nested_label", "bind_static_inputs", "scalars_as_vectors", "Ctx", "cexpr", "ctype",
           "add_map", "index_ranges", "product", "contiguous_strides",
           "IMPLEMENTATION"]

IMPLEMENTATION = "sdflow"


def expansion(*op_types: str, environments=(), name: str = IMPLEMENTATION):
    """Registers ``function(ctx) -> SDFG | Tasklet`` as the expansion of every node class of ``op_types``."""

    def decorate(function):
        for spec in registered_ops():
            if spec.op_type not in op_types:
                continue

            def expand(node, state, sdfg, _function=function):
                _prepare(node, state, sdfg)
                return _function(Ctx(node, state, sdfg, environments))

            transformation = type(f"Expand{spec.op_type}_{function.__name__}", (ExpandTransformation, ), {
                "environments": list(environments),
                "expansion": staticmethod(expand),
                "postprocessing": staticmethod(_name_nested_sdfg),
                "__module__": function.__module__,
            })
            transformation = dace.library.expansion(transformation)
            spec.node_class.register_implementation(name, transformation)
            spec.node_class.default_implementation = name
        return function

    return decorate


def nested_label(op_label: str) -> str:
    """The label of the nested SDFG an op expands into: the op's label made a C identifier (ONNX node names
    such as ``/encoder/layer.0/Add`` are not, and DaCe rejects such nested SDFGs)."""
    label = re.sub(r"\W", "_", op_label)
    return label if label[:1].isalpha() or label[:1] == "_" else "op_" + label


def _name_nested_sdfg(sdfg, state, expansion) -> None:
    if isinstance(expansion, dace.nodes.NestedSDFG):
        expansion.label = nested_label(expansion.label)


def bind_static_inputs(graph: Graph) -> int:
    """Records on every node the compile-time values of its shape-like inputs (what expansions read).
    Returns how many inputs were bound."""
    values = known_values(graph)
    bound = 0
    for node in graph.op_nodes():
        inputs = graph.node_inputs(node)
        semantics = semantics_of(node)
        for position in semantics.value_inputs + semantics.optional_value_inputs:
            if position < len(inputs) and inputs[position] in values and node.static_input(position) is None:
                node.set_static_input(position, values[inputs[position]])
                bound += 1
    return bound


def scalars_as_vectors(sdfg: dace.SDFG) -> None:
    """Rank-0 tensors become shape [1]: DaCe maps cannot propagate memlets of rank-0 arrays. Same memory,
    so callers still pass rank-0 numpy arrays."""
    scalars = set()
    for name, desc in sdfg.arrays.items():
        if not desc.shape:
            sdfg.arrays[name] = dace.data.Array(desc.dtype, [1], transient=desc.transient)
            sdfg.arrays[name].location = dict(desc.location)  # (the ONNX name of an input or output)
            scalars.add(name)
    for edge in sdfg.start_state.edges():
        if edge.data.data in scalars:
            edge.data = dace.Memlet.from_array(edge.data.data, sdfg.arrays[edge.data.data])


def _prepare(node, state, sdfg) -> None:
    """Brings a graph that did not come through ``lower`` (one opened in DaCe's VS Code extension, or a pass
    dump) into the form expansions expect; a no-op on lowered graphs."""
    if any(not sdfg.arrays[edge.data.data].shape for edge in state.all_edges(node)):
        scalars_as_vectors(sdfg)
    inputs = Graph(sdfg).node_inputs(node)
    if any(position < len(inputs) and inputs[position] and node.static_input(position) is None
           for position in semantics_of(node).value_inputs):
        bind_static_inputs(Graph(sdfg))


class Ctx:
    """What an expansion sees: the node, its connected arrays, and builders for the result."""

    def __init__(self, node, state, sdfg, environments=()):
        self.node, self.state, self.sdfg = node, state, sdfg
        self.environments = list(environments)
        self.inputs = {e.dst_conn: sdfg.arrays[e.data.data] for e in state.in_edges(node)}
        self.outputs = {e.src_conn: sdfg.arrays[e.data.data] for e in state.out_edges(node)}

    def desc(self, connector: str):
        return self.inputs.get(connector) or self.outputs[connector]

    def shape(self, connector: str) -> list:
        return list(self.desc(connector).shape)

    def static(self, position: int):
        """The compile-time value of input ``position`` (a list), or None when absent."""
        return self.node.static_input(position)

    def connector(self, kind: str, position: int) -> str | None:
        names = self.node.onnx_inputs if kind == "in" else self.node.onnx_outputs
        name = names[position] if position < len(names) else ""
        connected = self.inputs if kind == "in" else self.outputs
        return name if name and name in connected else None

    def nested(self, label: str | None = None) -> tuple[dace.SDFG, dace.SDFGState]:
        """A nested SDFG with one array per connector (same shape and type) and one state."""
        sdfg = dace.SDFG(re.sub(r"\W", "_", label or f"{self.node.op_type.lower()}_{self.node.label}"))
        for connector, desc in {**self.inputs, **self.outputs}.items():
            sdfg.add_array(connector, desc.shape, desc.dtype, strides=desc.strides)
        return sdfg, sdfg.add_state("compute")

    @staticmethod
    def ptr(connector: str) -> str:
        """The C++ name under which a ``tasklet`` sees ``connector`` (a pointer to the whole array)."""
        return f"_{connector}"

    def ptr_or_null(self, connector, ctype: str) -> str:
        """The connector's pointer, or (an absent optional input or output) a null pointer of type ``ctype``: the
        kernels' templates deduce their element types from it."""
        return self.ptr(connector) if connector is not None else f"static_cast<{ctype}*>(nullptr)"

    def tasklet(self, code: str, label: str | None = None, includes: str = "", unread=()) -> dace.SDFG:
        """One C++ tasklet that sees every connector ``c`` as ``ptr(c)``, a pointer to its whole array;
        ``includes`` goes to the top of the generated file (``#include <omp.h>``); inputs in ``unread`` are not
        passed (the kernel does not read them: no memlet claims their bytes).
        (DaCe's code cleaner drops label-like lines such as ``default:``: write if/else chains, not switch.)"""
        sdfg, state = self.nested()
        includes = math_includes(code) + includes
        inputs = {c: d for c, d in self.inputs.items() if c not in unread}
        tasklet = state.add_tasklet(label or self.node.op_type.lower(),
                                    {self.ptr(c): dace.pointer(d.dtype) for c, d in inputs.items()},
                                    {self.ptr(c): dace.pointer(d.dtype) for c, d in self.outputs.items()},
                                    code, language=dace.Language.CPP, code_global=includes)
        # The nested SDFG is inlined later, so the tasklet itself carries the libraries it needs.
        tasklet.environments = {env.full_class_path() for env in self.environments}
        for connector in inputs:
            state.add_edge(state.add_read(connector), None, tasklet, self.ptr(connector),
                           dace.Memlet.from_array(connector, sdfg.arrays[connector]))
        for connector in self.outputs:
            state.add_edge(tasklet, self.ptr(connector), state.add_write(connector), None,
                           dace.Memlet.from_array(connector, sdfg.arrays[connector]))
        return sdfg


def ctype(desc) -> str:
    return desc.dtype.ctype


def cexpr(expr) -> str:
    """C++ for an integer-valued symbolic expression (floor/ceil divisions as DaCe's int_floor/int_ceil)."""
    expr = sympy.sympify(expr)
    if expr.is_Integer:
        return str(int(expr))
    if expr.is_Symbol:
        return str(expr)
    if isinstance(expr, (sympy.floor, sympy.ceiling)):
        numerator, denominator = sympy.fraction(sympy.together(expr.args[0]))
        function = "int_floor" if isinstance(expr, sympy.floor) else "int_ceil"
        return f"{function}((int64_t)({cexpr(numerator)}), (int64_t)({cexpr(denominator)}))"
    if isinstance(expr, (dace.symbolic.int_floor, dace.symbolic.int_ceil)):
        function = "int_floor" if isinstance(expr, dace.symbolic.int_floor) else "int_ceil"
        return f"{function}((int64_t)({cexpr(expr.args[0])}), (int64_t)({cexpr(expr.args[1])}))"
    if isinstance(expr, (sympy.Max, sympy.Min)):
        function = "std::max" if isinstance(expr, sympy.Max) else "std::min"
        result = cexpr(expr.args[0])
        for arg in expr.args[1:]:
            result = f"{function}<int64_t>({result}, {cexpr(arg)})"
        return result
    if expr.is_Add:
        return "(" + " + ".join(cexpr(a) for a in expr.args) + ")"
    if expr.is_Mul:
        numerator, denominator = sympy.fraction(expr)
        if denominator != 1:
            return f"(({cexpr(numerator)}) / ({cexpr(denominator)}))"
        return "(" + " * ".join(cexpr(a) for a in expr.args) + ")"
    if expr.is_Pow and expr.exp.is_Integer and expr.exp > 0:
        return "(" + " * ".join([cexpr(expr.base)] * int(expr.exp)) + ")"
    if expr.is_Rational:
        return f"(({expr.p}) / ({expr.q}))"
    raise NotImplementedError(f"cannot print {expr} as C++")


def product(dims) -> sympy.Expr:
    result = sympy.Integer(1)
    for d in dims:
        result = result * d
    return result


def int_args(values) -> str:
    """C++ int64 arguments of a kernel call: each value (an int or a symbolic dim) as ``(int64_t)(expr)``."""
    return ", ".join(f"(int64_t)({cexpr(v)})" for v in values)


def int_array(name: str, values) -> str:
    """A C++ ``const int64_t name[]`` holding ``values`` (one 0 when there are none: C++ has no empty arrays)."""
    return f"const int64_t {name}[] = {{{int_args(values) or '0'}}};\n"


def contiguous_strides(shape) -> list:
    strides, running = [], sympy.Integer(1)
    for dim in reversed(list(shape)):
        strides.append(running)
        running = running * dim
    return strides[::-1]


def add_map(state: dace.SDFGState, label: str, ranges: dict, inputs: dict, code: str, outputs: dict,
            pointers=(), schedule=dace.ScheduleType.CPU_Multicore, includes: str = ""):
    """A map over ``ranges`` ({param: size}) around one C++ tasklet; memlets given as {connector: 'A[i0, 0]'};
    ``includes`` goes to the top of the generated file (helpers the tasklet calls).

    Connectors in ``pointers`` are typed as pointers to the subset's first element (a row the tasklet loops
    over), the rest as scalars. The outer dims run in parallel (collapsed); the innermost stays a plain loop
    the compiler vectorises, unless the tasklet loops by itself (it takes pointers): then every dim is shared
    out among the threads (rows of a [1, 128, 768] tensor are 128 parallel iterations, not 1)."""
    # Tasklet connectors must not share a name with any array; arrays never start with '_'.
    code = re.sub(r"\b(" + "|".join(map(re.escape, [*inputs, *outputs])) + r")\b", r"_\1", code) \
        if inputs or outputs else code
    arrays = state.parent.arrays
    memlets_in = {f"_{c}": _memlet(m, arrays) for c, m in inputs.items()}
    memlets_out = {f"_{c}": _memlet(m, arrays) for c, m in outputs.items()}
    pointers = [f"_{c}" for c in pointers]
    if not ranges:
        tasklet = state.add_tasklet(label, dict.fromkeys(memlets_in), dict.fromkeys(memlets_out), code,
                                    language=dace.Language.CPP)
        for c, m in memlets_in.items():
            state.add_edge(state.add_read(m.data), None, tasklet, c, m)
        for c, m in memlets_out.items():
            state.add_edge(tasklet, c, state.add_write(m.data), None, m)
        entry = None
    else:
        tasklet, entry, _ = state.add_mapped_tasklet(label, {p: f"0:{d}" for p, d in ranges.items()}, memlets_in,
                                                     code, memlets_out, language=dace.Language.CPP,
                                                     external_edges=True, schedule=schedule)
        entry.map.collapse = len(ranges) if pointers else max(1, len(ranges) - 1)
    includes = math_includes(code) + includes
    if includes:
        tasklet.code_global = dace.properties.CodeBlock(includes, dace.Language.CPP)
    for connector, memlet in {**memlets_in, **memlets_out}.items():
        connectors = tasklet.in_connectors if connector in memlets_in else tasklet.out_connectors
        dtype = arrays[memlet.data].dtype
        if connector in pointers:
            connectors[connector] = dace.pointer(dtype)
        elif not arrays[memlet.data].shape:
            connectors[connector] = dtype  # a rank-0 array is read as a value, not through a pointer
    return entry


def _memlet(text: str, arrays) -> dace.Memlet:
    """A memlet from 'A[i0, 0]'; rank-0 arrays take no subscript."""
    name = text.split("[", 1)[0]
    return dace.Memlet(name) if not arrays[name].shape else dace.Memlet(text)


def index_ranges(shape, skip=()) -> dict:
    """{'i<k>': dim} for every axis k of ``shape`` not in ``skip``."""
    return {f"i{k}": d for k, d in enumerate(shape) if k not in skip}
