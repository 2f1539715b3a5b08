"""CompiledModel: the Python callable around one native build. Checks inputs before any native code runs,
binds symbolic dims from input shapes, allocates outputs, and calls the library through ``fast_call``."""
from __future__ import annotations

import ctypes
import dataclasses
import functools
import json
import math
import os
import pathlib
import shutil
import statistics

import dace
import numpy as np
import sympy

from sdflow.ir import CompileError, Graph, InputError, TensorType, dim_assumptions
from sdflow.ir.ops import normalize_axis
from .lowering import nested_label
from .threads import ThreadPolicy

__all__ = ["CompiledModel", "Outputs", "OpTime", "op_milliseconds", "bind_inputs"]


@dataclasses.dataclass(frozen=True)
class OpTime:
    label: str
    op_type: str
    milliseconds: float


def bind_inputs(names: list[str], args, kwargs, expected: str = "") -> dict:
    """Inputs given by position and/or by ONNX name -> {name: value}; each name exactly once."""
    if len(args) > len(names):
        raise InputError(f"{len(args)} positional inputs given, the model takes {len(names)}: {names}")
    given = dict(zip(names, args))
    for key, value in kwargs.items():
        if key not in names:
            raise InputError(f"unknown input {key!r}; the model's inputs are {names}")
        if key in given:
            raise InputError(f"input {key!r} given both by position and by name")
        given[key] = value
    missing = [n for n in names if n not in given]
    if missing:
        raise InputError(f"missing input(s) {missing}" + (f"; expected {expected}" if expected else ""))
    return given


def op_milliseconds(report: dict) -> dict[str, float]:
    """Median milliseconds per call of every op in a ``CompiledModel.profile_report``."""
    per_run: dict[str, dict[int, float]] = {}
    for event in report["traceEvents"]:
        label = report["sdflowOps"].get(str(event["args"].get("cfg_id")))
        if label is not None:
            runs = per_run.setdefault(label, {})
            runs[event["args"]["run"]] = runs.get(event["args"]["run"], 0.0) + event["dur"] / 1e3
    return {label: statistics.median(runs.values()) for label, runs in per_run.items()}


class Outputs(tuple):
    """The outputs in ONNX order (a tuple of arrays), also addressable by output name: ``out['probs']``."""

    names: tuple[str, ...]

    def __new__(cls, names, arrays):
        result = super().__new__(cls, arrays)
        result.names = tuple(names)
        return result

    def __getitem__(self, key):
        if isinstance(key, str):
            try:
                return super().__getitem__(self.names.index(key))
            except ValueError:
                raise KeyError(f"no output named {key!r}; outputs are {list(self.names)}") from None
        return super().__getitem__(key)

    def as_dict(self) -> dict[str, np.ndarray]:
        return dict(zip(self.names, self))


class CompiledModel:
    """A compiled model: ``model(x)``, ``model(x=..)`` or ``model(*arrays)`` -> :class:`Outputs`.

    One build serves every call and every shape the model's symbolic dims allow."""

    def __init__(self, graph: Graph, program, weights: dict[str, np.ndarray], build_folder, *, built: bool,
                 build_seconds: float, target: str, instrumented: bool = False):
        self.graph = graph
        self.build_folder = build_folder
        self.built = built  # False when loaded from the on-disk cache
        self.pass_records = []  # set by sdflow.compile: one record per pass of its pipeline
        self.graph_from_cache = False  # set by sdflow.compile: the optimised graph came from its graph cache
        self.build_record = None  # set by codegen.build: what loading this build again needs (BuildRecord)
        self.build_seconds = build_seconds
        self.target = target
        self._instrumented = instrumented
        self._program = program
        self._input_description: str | None = None  # (_describe_inputs)
        # Instrumented builds time their ops: a fixed thread count, so that every run measures the same program.
        self.thread_policy = ThreadPolicy(adaptive=not instrumented)
        self._weights = weights  # kept alive: the native code reads them through raw pointers
        self._weight_args = {n: ctypes.c_void_p(w.ctypes.data) for n, w in weights.items()}
        self._inputs = [(graph.onnx_name(n), n, graph.tensor_type(n)) for n in graph.inputs]
        self._onnx_names = {n: onnx for onnx, n, _ in self._inputs}
        self._outputs = [(graph.onnx_name(n), n, graph.tensor_type(n)) for n in graph.outputs]
        self._index_bounds = _index_bounds(graph)
        self._length_bounds = [(name, _shape_function([steps]), where) for name, steps, where in _length_bounds(graph)]
        self._assumptions = [(_shape_function([a]), relation, _shape_function([b]), a, b, where)
                             for a, relation, b, where in dim_assumptions(graph)]
        self._output_shapes = {name: _shape_function(ttype.shape) for _, name, ttype in self._outputs}
        self._output_itemsizes = [np.dtype(ttype.dtype).itemsize for _, _, ttype in self._outputs]
        _check_outputs_are_determined(self._inputs, self._outputs)
        self._input_shapes = {name: _shape_function(ttype.shape) for _, name, ttype in self._inputs}
        typedict = program._typedict
        self._signature = [(name, typedict[name]) for name in program._sig]
        self._init_symbols = set(program._free_symbols)
        # What each argument of the native call is: 0 a weight, 1 an input, 2 an output, 3 a symbol's value.
        outputs = {name for _, name, _ in self._outputs}
        self._plan = [(0 if name in self._weight_args else 1 if name in self._onnx_names else 2 if name in outputs
                       else 3, name, desc.dtype.as_ctypes() if name not in self._weight_args else None)
                      for name, desc in self._signature]
        self._output_dtypes = [ttype.dtype for _, _, ttype in self._outputs]
        self._output_names = tuple(onnx for onnx, _, _ in self._outputs)
        # A model whose dims are all numbers checks its inputs' shapes against constants and allocates outputs of
        # shapes found once (no symbols to bind per call).
        self._static_shapes = None
        if all(isinstance(d, int) for _, _, t in self._inputs + self._outputs for d in t.shape) \
                and not self._assumptions and not self._length_bounds:
            self._static_inputs = [(onnx, name, ttype, tuple(ttype.shape)) for onnx, name, ttype in self._inputs]
            try:
                self._static_shapes = [tuple(shape) for shape in self._checked_output_shapes({})]
            except InputError:
                self._static_shapes = None  # (the checks per call raise it then)

    def set_threads(self, threads: int | None = None, adaptive: bool = True) -> None:
        """At most ``threads`` OpenMP threads per call (None: OMP_NUM_THREADS, else the cores this process may use);
        ``adaptive``: fewer when fewer measure faster (a busy machine, a small model; see
        ``codegen.threads.ThreadPolicy``), else always ``threads``. Results do not depend on it."""
        self.thread_policy = ThreadPolicy(threads, adaptive=adaptive and not self._instrumented)

    @property
    def threads(self) -> int:
        """The thread count calls run with now."""
        return self.thread_policy.current if self.thread_policy.adaptive else self.thread_policy.limit

    @property
    def weight_names(self) -> list[str]:
        """The constants passed to the native program: the model's weights and the packed forms lowering made of
        some (``<weight>__packed8``, ``__winograd8`` or ``__channels16``: a Conv that runs the direct kernel in that
        form, see ``codegen.lowering.conv_direct``)."""
        return sorted(self._weights)

    @property
    def input_names(self) -> list[str]:
        return [onnx for onnx, _, _ in self._inputs]

    @property
    def output_names(self) -> list[str]:
        return [onnx for onnx, _, _ in self._outputs]

    @property
    def input_types(self) -> dict[str, TensorType]:
        return {onnx: ttype for onnx, _, ttype in self._inputs}

    @property
    def output_types(self) -> dict[str, TensorType]:
        return {onnx: ttype for onnx, _, ttype in self._outputs}

    def __repr__(self) -> str:
        inputs = ", ".join(f"{n}: {t}" for n, t in self.input_types.items())
        outputs = ", ".join(f"{n}: {t}" for n, t in self.output_types.items())
        return f"<CompiledModel {self.graph.name}({inputs}) -> ({outputs}) [{self.target}]>"

    # ---- profiling -----------------------------------------------------------------------------------------
    def profile_report(self, *args, runs: int = 10, **kwargs) -> dict:
        """Runs ``runs`` calls of an instrumented build (``sdflow.compile(..., instrument=True)``) and returns
        DaCe's timing events of all of them as one Chrome-trace report that DaCe's viewers load onto the built
        program's SDFG (``program_sdfg``). Each event's ``args`` also carry ``sdfg_id`` (the viewers read that
        name; DaCe writes ``cfg_id``) and ``run``; ``sdflowOps`` maps each timed nested SDFG to its op."""
        ops = {n.sdfg.cfg_id: n.label for n in self._program.sdfg.start_state.nodes()
               if isinstance(n, dace.nodes.NestedSDFG)}
        if not ops or not self._instrumented:
            raise CompileError("profiling needs a model compiled with instrument=True")
        labels = {nested_label(n.label): n.label for n in self.graph.op_nodes()}
        perf = self.build_folder / "perf"
        shutil.rmtree(perf, ignore_errors=True)
        perf.mkdir()  # DaCe writes its reports here but does not create the folder
        for _ in range(runs):
            self(*args, **kwargs)
        events = []
        for run, report_file in enumerate(sorted(perf.glob("*.json"))):
            for event in json.loads(report_file.read_text())["traceEvents"]:
                event["args"].update(sdfg_id=event["args"].get("cfg_id", 0), run=run)
                events.append(event)
        return {"traceEvents": events, "sdflowOps": {str(i): labels.get(n, n) for i, n in ops.items()}}

    @property
    def program_sdfg(self) -> pathlib.Path:
        """The built program's SDFG as DaCe saved it (what ``profile_report``'s events refer to)."""
        return self.build_folder / "program.sdfgz"

    def profile(self, *args, runs: int = 10, **kwargs) -> list[OpTime]:
        """Median time per op over ``runs`` calls, slowest first (needs an instrumented build)."""
        op_types = {n.label: n.op_type for n in self.graph.op_nodes()}
        times = op_milliseconds(self.profile_report(*args, runs=runs, **kwargs))
        result = [OpTime(label, op_types.get(label, "?"), ms) for label, ms in times.items()]
        return sorted(result, key=lambda t: -t.milliseconds)

    # ---- calling -------------------------------------------------------------------------------------------
    def __call__(self, *args, **kwargs) -> Outputs:
        call_args, init_args, outputs = self.prepare(*args, **kwargs)
        self.thread_policy.run(self._program.fast_call, call_args, init_args)
        return outputs

    def prepare(self, *args, **kwargs) -> tuple[tuple, tuple, Outputs]:
        """Checks the inputs and allocates the outputs; returns what ``run_prepared`` needs and the Outputs it
        writes into, which must stay alive while it runs. Splitting a call this way lets benchmarks tell the
        Python overhead from the kernels' time."""
        arrays = self._collect(args, kwargs)
        if self._static_shapes is not None:
            for onnx_name, name, ttype, shape in self._static_inputs:
                if arrays[name].shape != shape:
                    raise InputError(f"input {onnx_name!r} has shape {list(arrays[name].shape)}, expected {ttype} "
                                     f"= {list(shape)}")
            symbols, shapes = {}, self._static_shapes
        else:
            symbols = self._bind(arrays)
            shapes = self._checked_output_shapes(symbols)
        outputs = {name: np.empty(shape, dtype=dtype)
                   for (_, name, _), shape, dtype in zip(self._outputs, shapes, self._output_dtypes)}
        call_args, init_args = [], []
        for kind, name, ctype in self._plan:
            if kind == 0:
                value = self._weight_args[name]
            elif kind == 1:
                value = ctypes.c_void_p(arrays[name].ctypes.data)
            elif kind == 2:
                value = ctypes.c_void_p(outputs[name].ctypes.data)
            else:
                value = ctype(symbols[name])
                if name in self._init_symbols:
                    init_args.append(value)
            call_args.append(value)
        # The arrays must outlive the call: the Outputs hold the outputs and keep the (maybe copied) inputs.
        result = Outputs(self._output_names, [outputs[name] for _, name, _ in self._outputs])
        result._keepalive = arrays
        return tuple(call_args), tuple(init_args), result

    def run_prepared(self, call_args: tuple, init_args: tuple) -> None:
        """Runs the native code on arguments from ``prepare`` (writes into that call's outputs again)."""
        self.thread_policy.run(self._program.fast_call, call_args, init_args)

    def _collect(self, args, kwargs) -> dict[str, np.ndarray]:
        """Inputs by IR name, checked for presence, element type, rank and static dims."""
        given = bind_inputs(self.input_names, args, kwargs, self._describe_inputs())
        arrays = {}
        for onnx_name, name, ttype in self._inputs:
            value = given[onnx_name]
            if isinstance(value, np.generic):  # a numpy scalar (x.sum(), np.float32(1)) is a rank-0 array
                value = np.asarray(value)
            if not isinstance(value, np.ndarray):
                raise InputError(f"input {onnx_name!r} must be a numpy array of {ttype}, got {type(value).__name__}")
            if value.dtype != ttype.dtype:
                raise InputError(f"input {onnx_name!r} has element type {value.dtype}, expected {ttype.dtype} "
                                 f"({ttype})")
            if value.ndim != ttype.rank:
                raise InputError(f"input {onnx_name!r} has rank {value.ndim} (shape {list(value.shape)}), "
                                 f"expected rank {ttype.rank} ({ttype})")
            arrays[name] = np.asarray(value, order="C")
            for size, what in self._index_bounds.get(name, ()):
                if arrays[name].size and (arrays[name].min() < -size or arrays[name].max() >= size):
                    bad = arrays[name][(arrays[name] < -size) | (arrays[name] >= size)].ravel()[0]
                    raise InputError(f"input {onnx_name!r} holds index {bad}, out of range for {what} "
                                     f"(valid: {-size} to {size - 1})")
        return arrays

    def _bind(self, arrays) -> dict[str, int]:
        symbols: dict[str, int] = {}
        for onnx_name, name, ttype in self._inputs:
            for axis, (dim, size) in enumerate(zip(ttype.shape, arrays[name].shape)):
                if isinstance(dim, sympy.Symbol):
                    if symbols.setdefault(str(dim), size) != size:
                        raise InputError(f"input {onnx_name!r} dim {axis} is {size}, but {dim} = "
                                         f"{symbols[str(dim)]} from another input ({self._describe_inputs()})")
        for left, relation, right, a, b, where in self._assumptions:
            if not _ASSUMED[relation](left(symbols)[0], right(symbols)[0]):
                given = " and ".join(f"{e} = {f(symbols)[0]}" for e, f in ((a, left), (b, right)) if not e.is_number)
                raise InputError(f"{where} needs {a} {relation} {b}, but the inputs give {given} "
                                 f"({self._describe_inputs()})")
        for name, steps, where in self._length_bounds:
            lengths, limit = arrays[name], steps(symbols)[0]
            if lengths.size and (lengths.min() < 0 or lengths.max() > limit):
                raise InputError(f"input {self._onnx_names[name]!r} holds sequence lengths {lengths.tolist()}; "
                                 f"{where} takes 0 to {limit} (its steps)")
        for onnx_name, name, ttype in self._inputs:
            expected = self._input_shapes[name](symbols)
            if list(arrays[name].shape) != expected:
                raise InputError(f"input {onnx_name!r} has shape {list(arrays[name].shape)}, expected {ttype} "
                                 f"= {expected}")
        return symbols

    def _checked_output_shapes(self, symbols: dict[str, int]) -> list[list[int]]:
        """The outputs' shapes for these inputs; an InputError, before anything is allocated, when one is negative
        or all of them together would not fit in this machine's memory."""
        shapes = [self._output_shapes[name](symbols) for _, name, _ in self._outputs]
        total = 0
        for (onnx_name, _, ttype), shape, itemsize in zip(self._outputs, shapes, self._output_itemsizes):
            if any(size < 0 for size in shape):
                raise InputError(f"output {onnx_name!r} {ttype} would have shape {shape} for these inputs "
                                 f"({self._describe_inputs()})")
            total += math.prod(shape) * itemsize
        if total > _physical_memory():
            listed = ", ".join(f"{o} {t} = {s}" for (o, _, t), s in zip(self._outputs, shapes))
            raise InputError(f"the outputs would take {total / 2**30:,.1f} GiB, more than this machine's "
                             f"{_physical_memory() / 2**30:,.1f} GiB: {listed}; dims {symbols}")
        return shapes

    def _describe_inputs(self) -> str:
        """The inputs and their types, for error messages (made once: every call passes it along)."""
        if self._input_description is None:
            self._input_description = ", ".join(f"{n}: {t}" for n, t in self.input_types.items())
        return self._input_description


_ASSUMED = {"==": lambda a, b: a == b, "== or 1": lambda a, b: a == b or a == 1, ">=": lambda a, b: a >= b}


@functools.cache
def _physical_memory() -> int:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def _check_outputs_are_determined(inputs, outputs) -> None:
    """Every symbolic dim of an output must follow from the inputs' dims (never a default number at call time)."""
    bound = {str(d) for _, _, ttype in inputs for d in ttype.shape if isinstance(d, sympy.Symbol)}
    for onnx_name, _, ttype in outputs:
        free = sorted({str(s) for d in ttype.shape if isinstance(d, sympy.Basic) for s in d.free_symbols} - bound)
        if free:
            raise CompileError(f"output {onnx_name!r} {ttype}: dim(s) {', '.join(free)} follow from no input's "
                               "shape (a value-dependent output size), so its size at call time is unknown")


# DaCe's integer divisions in dims (strided windows over symbolic sizes), as Python integer arithmetic.
_INTEGER_DIVISIONS = {"int_floor": lambda a, b: a // b, "int_ceil": lambda a, b: -(-a // b)}


def _shape_function(shape):
    """symbols -> concrete shape; symbolic dims are compiled to Python once, not substituted per call."""
    getters = []
    for dim in shape:
        if isinstance(dim, int):
            getters.append(lambda symbols, value=dim: value)
        elif isinstance(dim, sympy.Symbol):
            getters.append(lambda symbols, name=str(dim): symbols[name])
        else:
            names = sorted(str(s) for s in dim.free_symbols)
            function = sympy.lambdify([sympy.Symbol(n) for n in names],
                                      dim.xreplace({s: sympy.Symbol(str(s)) for s in dim.free_symbols}),
                                      [_INTEGER_DIVISIONS, "math"])
            getters.append(lambda symbols, f=function, names=names: int(f(*(symbols[n] for n in names))))
    return lambda symbols: [get(symbols) for get in getters]


def _length_bounds(graph: Graph) -> list[tuple[str, object, str]]:
    """Graph inputs that are a recurrence's sequence_lens, with its number of steps: a length outside 0..steps is
    an input the model cannot take (ONNX Runtime refuses it; the kernel would clamp it)."""
    found = []
    for node in graph.op_nodes():
        inputs = graph.node_inputs(node)
        if node.op_type in ("LSTM", "GRU", "RNN") and len(inputs) > 4 and inputs[4] in graph.inputs:
            x_shape = graph.tensor_type(inputs[0]).shape
            found.append((inputs[4], x_shape[1] if node.attr("layout", 0) else x_shape[0],
                          f"{node.op_type} node {node.label!r}"))
        if node.op_type == "ReverseSequence" and inputs[1] in graph.inputs:
            found.append((inputs[1], graph.tensor_type(inputs[0]).shape[node.attr("time_axis", 0)],
                          f"ReverseSequence node {node.label!r}"))
    return found


def _index_bounds(graph: Graph) -> dict[str, list[tuple[int, str]]]:
    """Graph inputs used directly as Gather indices: their valid range, checked before native code runs (the
    kernels clamp, so a bad token id would otherwise give a silently wrong answer)."""
    bounds: dict[str, list[tuple[int, str]]] = {}
    inputs = set(graph.inputs)
    for node in graph.op_nodes():
        if node.op_type == "RoiAlign" and graph.node_inputs(node)[2] in inputs:
            data_type = graph.tensor_type(graph.node_inputs(node)[0])
            if isinstance(data_type.shape[0], int):
                bounds.setdefault(graph.node_inputs(node)[2], []).append(
                    (data_type.shape[0], f"the batch of RoiAlign node {node.label!r}"))
            continue
        if node.op_type not in ("Gather", "GatherElements"):
            continue
        data, indices = graph.node_inputs(node)[:2]
        if indices in inputs:
            data_type = graph.tensor_type(data)
            axis = normalize_axis(node.attr("axis", 0), data_type.rank)
            if isinstance(data_type.shape[axis], int):
                bounds.setdefault(indices, []).append(
                    (data_type.shape[axis], f"axis {axis} of {data!r} in {node.op_type} node {node.label!r}"))
    return bounds
