"""The IR graph: a DaCe SDFG with one dataflow state whose op nodes are ``OpNode``s.

Conventions (all persisted in the ``.sdfg`` file, so save/load round-trips):
- every tensor is an SDFG array; intermediate tensors are transient;
- graph inputs then outputs are ``sdfg.arg_names``, in ONNX order; an output is an argument that is written;
- constants (weights) are non-transient arrays whose values live in ``sdfg.constants_prop``;
- ONNX names of inputs/outputs are kept in the array descriptor's ``location['onnx_name']``.
"""
from __future__ import annotations

import contextlib
import heapq
import keyword
import pathlib
import re

import dace
import numpy as np
from dace.sdfg import nodes as dnodes

from .errors import VerificationError
from .nodes import OpNode
from .types import TensorType, dace_dtype, element_dtype, is_storage_only, storage_dtype

__all__ = ["Graph"]

_NO_DEBUGINFO = dace.dtypes.DebugInfo(0)

# Constants up to this many elements stay inside the .sdfg file (shape vectors, scalars, small biases).
INLINE_CONSTANT_LIMIT = 4096

# C++ keywords, alternative tokens (``xor``, ``and``, ...) and names the generated code uses: an ONNX tensor
# called ``xor`` must not become a C++ identifier ``xor``.
_CPP_RESERVED = {
    "alignas", "alignof", "and", "and_eq", "asm", "auto", "bitand", "bitor", "bool", "break", "case", "catch",
    "char", "char8_t", "char16_t", "char32_t", "class", "co_await", "co_return", "co_yield", "compl", "concept",
    "const", "consteval", "constexpr", "constinit", "const_cast", "continue", "decltype", "default", "delete", "do",
    "double", "dynamic_cast", "else", "enum", "explicit", "export", "extern", "false", "float", "for", "friend",
    "goto", "if", "inline", "int", "long", "mutable", "namespace", "new", "noexcept", "not", "not_eq", "nullptr",
    "operator", "or", "or_eq", "private", "protected", "public", "register", "reinterpret_cast", "requires",
    "return", "short", "signed", "sizeof", "static", "static_assert", "static_cast", "struct", "switch",
    "template", "this", "thread_local", "throw", "true", "try", "typedef", "typeid", "typename", "union",
    "unsigned", "using", "virtual", "void", "volatile", "wchar_t", "while", "xor", "xor_eq",
    "main", "std", "dace", "min", "max", "abs", "exp", "log", "sqrt", "pow", "tanh", "erf", "null", "NULL"}


class Graph:
    """A thin view over an SDFG that speaks in tensors and op nodes."""

    def __init__(self, sdfg: dace.SDFG):
        self.sdfg = sdfg
        self.pass_records: list = []  # filled by sdflow.optimize: what each pass did (not persisted)

    @classmethod
    def empty(cls, name: str) -> "Graph":
        sdfg = dace.SDFG(_identifier(name or "model"))
        sdfg.add_state("main", is_start_block=True)
        return cls(sdfg)

    @property
    def name(self) -> str:
        return self.sdfg.name

    @property
    def state(self) -> dace.SDFGState:
        return self.sdfg.start_state

    # ---- tensors -------------------------------------------------------------------------------------------
    def fresh_name(self, hint: str) -> str:
        base = _identifier(hint)
        name, counter = base, 0
        while name in self.sdfg.arrays or name in self.sdfg.symbols:
            counter += 1
            name = f"{base}_{counter}"
        return name

    def add_tensor(self, hint: str, ttype: TensorType, transient: bool = True) -> str:
        name = self.fresh_name(hint)
        for dim in ttype.shape:
            for symbol in getattr(dim, "free_symbols", ()):
                if str(symbol) not in self.sdfg.symbols:
                    self.sdfg.add_symbol(str(symbol), dace.int64)
        self.sdfg.add_array(name, list(ttype.shape), dace_dtype(ttype.dtype), transient=transient)
        if is_storage_only(ttype.dtype):
            self.sdfg.arrays[name].location["element_type"] = ttype.dtype.name
        return name

    def add_input(self, onnx_name: str, ttype: TensorType) -> str:
        name = self.add_tensor(onnx_name, ttype, transient=False)
        self.sdfg.arrays[name].location["onnx_name"] = onnx_name
        self.sdfg.arg_names = list(self.sdfg.arg_names) + [name]
        return name

    def mark_output(self, name: str, onnx_name: str) -> None:
        desc = self.sdfg.arrays[name]
        desc.transient = False
        desc.location["onnx_name"] = onnx_name
        self.sdfg.arg_names = list(self.sdfg.arg_names) + [name]

    def add_constant(self, hint: str, value: np.ndarray) -> str:
        value = np.asarray(value, order="C")
        name = self.add_tensor(hint, TensorType(value.dtype, value.shape), transient=False)
        # ml_dtypes values (bfloat16, float8, int4, ...) are kept as their bytes: DaCe and .npz files take those.
        self.sdfg.add_constant(name, value.view(storage_dtype(value.dtype)), self.sdfg.arrays[name])
        return name

    def tensor_type(self, name: str) -> TensorType:
        desc = self.sdfg.arrays[name]
        element_type = desc.location.get("element_type")
        return TensorType(element_dtype(element_type) if element_type else desc.dtype.as_numpy_dtype(), desc.shape)

    def is_constant(self, name: str) -> bool:
        return name in self.sdfg.constants_prop

    def constant(self, name: str) -> np.ndarray:
        value = self.sdfg.constants_prop[name][1]
        dtype = self.tensor_type(name).dtype
        return value if value.dtype == dtype else value.view(dtype)

    @property
    def constants(self) -> dict[str, np.ndarray]:
        return {name: self.constant(name) for name in self.sdfg.constants_prop}

    def onnx_name(self, name: str) -> str:
        return self.sdfg.arrays[name].location.get("onnx_name", name)

    @property
    def outputs(self) -> list[str]:
        written = {n.data for n in self.state.data_nodes() if self.state.in_degree(n) > 0}
        return [a for a in self.sdfg.arg_names if a in written]

    @property
    def inputs(self) -> list[str]:
        outputs = set(self.outputs)
        return [a for a in self.sdfg.arg_names if a not in outputs]

    @property
    def symbols(self) -> list[str]:
        return sorted(self.sdfg.symbols)

    # ---- op nodes ------------------------------------------------------------------------------------------
    def access(self, name: str) -> dnodes.AccessNode:
        for node in self.state.data_nodes():
            if node.data == name:
                return node
        # An explicit DebugInfo: DaCe otherwise inspects the Python stack for every node (slow on big models).
        return self.state.add_access(name, debuginfo=_NO_DEBUGINFO)

    def add_op(self, node: OpNode, inputs: list[str | None], outputs: list[str | None]) -> OpNode:
        """Adds ``node`` reading tensor ``inputs[i]`` on its i-th ONNX input (None = absent) and writing outputs."""
        state = self.state
        state.add_node(node)
        for connector, tensor in zip(node.onnx_inputs, inputs):
            if connector and tensor is not None:
                state.add_edge(self.access(tensor), None, node, connector,
                               dace.Memlet.from_array(tensor, self.sdfg.arrays[tensor]))
        for connector, tensor in zip(node.onnx_outputs, outputs):
            if connector and tensor is not None:
                state.add_edge(node, connector, self.access(tensor), None,
                               dace.Memlet.from_array(tensor, self.sdfg.arrays[tensor]))
        return node

    def op_nodes(self) -> list[OpNode]:
        """Op nodes in topological order, ties broken by insertion order (ONNX order after import), which
        survives save/load."""
        state = self.state
        # Access nodes go first whenever ready, so ops come out in their own insertion order.
        ids = {node: (isinstance(node, OpNode), index) for index, node in enumerate(state.nodes())}
        waiting = {node: state.in_degree(node) for node in ids}
        ready = [(ids[n], n) for n, degree in waiting.items() if degree == 0]
        heapq.heapify(ready)
        order = []
        while ready:
            _, node = heapq.heappop(ready)
            order.append(node)
            for edge in state.out_edges(node):
                waiting[edge.dst] -= 1
                if waiting[edge.dst] == 0:
                    heapq.heappush(ready, (ids[edge.dst], edge.dst))
        return [n for n in order if isinstance(n, OpNode)]

    def node_inputs(self, node: OpNode) -> list[str | None]:
        by_connector = {e.dst_conn: e.data.data for e in self.state.in_edges(node)}
        return [by_connector.get(c) if c else None for c in node.onnx_inputs]

    def node_outputs(self, node: OpNode) -> list[str | None]:
        by_connector = {e.src_conn: e.data.data for e in self.state.out_edges(node)}
        return [by_connector.get(c) if c else None for c in node.onnx_outputs]

    def producer(self, tensor: str) -> OpNode | None:
        for access in self.state.data_nodes():
            if access.data == tensor:
                for edge in self.state.in_edges(access):
                    return edge.src
        return None

    def consumers(self, tensor: str) -> list[OpNode]:
        return [e.dst for a in self.state.data_nodes() if a.data == tensor for e in self.state.out_edges(a)]

    def remove_op(self, node: OpNode) -> None:
        """Removes an op and every tensor that no longer has a reader or writer (graph arguments stay)."""
        touched = [e.data.data for e in self.state.all_edges(node)]
        self.state.remove_node(node)
        for tensor in touched:
            self.remove_tensor_if_unused(tensor)

    def replace_ops(self, old: list[OpNode], new=()) -> None:
        """Removes the op nodes ``old`` and adds each ``(node, inputs, outputs)`` of ``new``; only then are the
        tensors that no op touches any more removed (a tensor the new ops read outlives its old readers)."""
        touched = {e.data.data for node in old for e in self.state.all_edges(node)}
        for node in old:
            self.state.remove_node(node)
        for node, inputs, outputs in new:
            self.add_op(node, inputs, outputs)
        for tensor in touched:
            self.remove_tensor_if_unused(tensor)

    def disconnect_input(self, node: OpNode, position: int) -> None:
        connector = node.onnx_inputs[position]
        for edge in list(self.state.in_edges_by_connector(node, connector)):
            self.state.remove_edge(edge)
            node.remove_in_connector(connector)
            self.remove_tensor_if_unused(edge.data.data)
        inputs = list(node.onnx_inputs)
        inputs[position] = ""
        node.onnx_inputs = inputs

    def remove_tensor_if_unused(self, tensor: str) -> None:
        """Removes the tensor's access nodes that no edge touches any more, and the tensor itself unless it is
        a graph argument (an input nothing reads stays in the signature)."""
        for access in list(self.state.data_nodes()):
            if access.data == tensor and self.state.degree(access) == 0:
                self.state.remove_node(access)
        if tensor in self.sdfg.arg_names:
            return
        if not any(a.data == tensor for a in self.state.data_nodes()) and tensor in self.sdfg.arrays:
            self.sdfg.constants_prop.pop(tensor, None)
            self.sdfg.remove_data(tensor, validate=False)

    def replace_uses(self, old: str, new: str) -> None:
        """Redirects every reader of tensor ``old`` to tensor ``new``; a ``new`` that nobody reads (the value of
        a dead op) is removed rather than left as an isolated node."""
        readers = [e for a in self.state.data_nodes() if a.data == old for e in self.state.out_edges(a)]
        if readers:
            new_access = self.access(new)
            for edge in readers:
                self.state.remove_edge(edge)
                self.state.add_edge(new_access, None, edge.dst, edge.dst_conn,
                                    dace.Memlet.from_array(new, self.sdfg.arrays[new]))
        self.remove_tensor_if_unused(old)
        self.remove_tensor_if_unused(new)

    # ---- persistence ---------------------------------------------------------------------------------------
    def save(self, path, inline_limit: int = INLINE_CONSTANT_LIMIT) -> None:
        """Writes ``path`` (a ``.sdfg`` any DaCe viewer opens). Constants larger than ``inline_limit`` elements
        go to ``<path>.weights.npz`` beside it (JSON would be huge and slow); their descriptors say where."""
        path = pathlib.Path(path)
        large = {n: v for n, v in self.constants.items() if v.size > inline_limit}
        weights_file = path.with_name(path.name + ".weights.npz")
        with self._without_constants(large):
            for name in large:
                # The relative name serves Graph.load; the absolute path serves a process that got the graph
                # without its file (DaCe's VS Code daemon receives the JSON only).
                self.sdfg.arrays[name].location.update(external_data=weights_file.name,
                                                       external_data_path=str(weights_file.resolve()))
            try:
                self.sdfg.save(str(path))
            finally:
                for name in large:
                    self.sdfg.arrays[name].location.pop("external_data", None)
                    self.sdfg.arrays[name].location.pop("external_data_path", None)
        if large:
            np.savez(weights_file, **large)

    @classmethod
    def load(cls, path) -> "Graph":
        from . import ops  # noqa: F401  (node classes must be registered before deserialising)
        path = pathlib.Path(path)
        try:
            graph = cls(dace.SDFG.from_file(str(path)))
            graph.attach_external_constants(path.parent)
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise VerificationError(f"cannot load IR graph from {path}: {error}") from error
        return graph

    def attach_external_constants(self, directory=None) -> None:
        """Loads the constants that ``save`` wrote to a ``.weights.npz`` sidecar: from ``directory`` (where the
        ``.sdfg`` was read) when given, else from the absolute path recorded at save time."""
        files: dict[pathlib.Path, list[str]] = {}
        for name, desc in self.sdfg.arrays.items():
            if "external_data" in desc.location:
                relative = desc.location.pop("external_data")
                absolute = desc.location.pop("external_data_path", None)
                file = pathlib.Path(directory, relative) if directory is not None else \
                    pathlib.Path(absolute or relative)
                files.setdefault(file, []).append(name)
        for file, names in files.items():
            with np.load(file) as weights:
                for name in names:
                    self.sdfg.add_constant(name, weights[name], self.sdfg.arrays[name])

    def structure_json(self) -> dict:
        """The SDFG as JSON without the constants' values (what viewers draw; weights would only bloat it)."""
        with self._without_constants(list(self.sdfg.constants_prop)):
            return self.sdfg.to_json()

    def copy(self) -> "Graph":
        """A structural copy; constant arrays are shared (they are never modified in place)."""
        constants = dict(self.sdfg.constants_prop)
        with self._without_constants(constants):
            clone = dace.SDFG.from_json(self.sdfg.to_json())
        for name, entry in constants.items():
            clone.constants_prop[name] = entry
        return Graph(clone)

    @contextlib.contextmanager
    def _without_constants(self, names):
        """Temporarily takes ``names`` out of ``constants_prop`` (serialising them as JSON lists is slow)."""
        taken = {n: self.sdfg.constants_prop.pop(n) for n in list(names)}
        try:
            yield
        finally:
            self.sdfg.constants_prop.update(taken)


def _identifier(text: str) -> str:
    name = re.sub(r"\W", "_", text).strip("_") or "t"
    if name[0].isdigit() or keyword.iskeyword(name) or name in _CPP_RESERVED or name.startswith("__"):
        name = "t_" + name
    return name
