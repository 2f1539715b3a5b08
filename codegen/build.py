"""Building a graph into a CompiledModel: lower, look up the build cache, generate + compile on a miss."""
from __future__ import annotations

import contextlib
import copy
import dataclasses
import pathlib
import threading
import time

import dace
import numpy as np

from sdflow.ir import CompileError, Graph, VerificationError, verify_buffer_sharing
from sdflow.ir.ops.control import SUBGRAPHS
from . import cache
from .threads import configure_native_runtime
from .lowering import expand, hoist_branch_constants, lower, weight_value
from .lowering.select import select_kernels
from .options import KernelOptions
from .memory import reuse_transients
from .runtime import CompiledModel

__all__ = ["build", "BuildRecord", "TARGETS", "native_builds"]

TARGETS = ("cpu", )
_NATIVE_BUILDS = 0


def native_builds() -> int:
    """How many times this process has generated and compiled native code (cache hits do not count)."""
    return _NATIVE_BUILDS


def _report(progress, message: str) -> None:
    if progress:
        progress(message)


@contextlib.contextmanager
def _heartbeat(progress, what: str, every: float = 5.0):
    """Reports ``what`` with the elapsed time every ``every`` seconds until the block ends."""
    if not progress:
        yield
        return
    done = threading.Event()
    start = time.perf_counter()

    def beat():
        while not done.wait(every):
            progress(f"{what} ({time.perf_counter() - start:.0f} s)")

    thread = threading.Thread(target=beat, daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()


SIGNATURE_FILE = "signature.sdfg"


def _signature(sdfg: dace.SDFG) -> tuple:
    arglist = sdfg.arglist()
    return (sdfg.signature_arglist(with_types=True, arglist=arglist), sorted(sdfg.free_symbols), sdfg.name,
            sorted(arglist), sorted(sdfg.constants))


def _signature_sdfg(sdfg: dace.SDFG) -> dace.SDFG:
    """What loading a build needs of the program: its arguments, symbols and name, without the states' contents
    (building the full expanded SDFG from JSON takes seconds for a 12-layer transformer). Falls back to the full
    SDFG whenever the stripped one would not describe exactly the same C signature."""
    stripped = copy.deepcopy(sdfg)
    for state in stripped.states():
        for node in list(state.nodes()):
            state.remove_node(node)
    for name in [n for n, desc in stripped.arrays.items() if desc.transient]:
        stripped.remove_data(name, validate=False)
    symbols = sorted(str(s) for s in sdfg.free_symbols)
    if symbols:
        # Without states that use them, DaCe leaves dims out of the arguments (GPT-2's batch was, so its full
        # 1.8 MB SDFG was saved and took ~3 s to load); a condition that names each one keeps them.
        stripped.add_state_after(stripped.start_state, "uses_symbols",
                                 condition=" and ".join(f"({s} >= 0)" for s in symbols))
    try:
        same = _signature(stripped) == _signature(sdfg)
    except KeyError:  # a branch condition reading a transient that stripping removed (If): keep the full SDFG
        same = False
    return stripped if same else sdfg


@dataclasses.dataclass(frozen=True)
class BuildRecord:
    """Enough to load a build again without lowering its graph: the build folder, the graph constants passed as
    weights, and the code generators' digest it was made with (a record from other code is not used)."""

    folder: str
    weights: tuple[str, ...]
    codegen: str

    def usable(self) -> bool:
        return self.codegen == cache.codegen_digest() and cache.is_complete(cache.cache_root() / self.folder)


def build(graph: Graph, target: str = "cpu", progress=None, instrument: bool = False,
          known: BuildRecord | None = None, options: KernelOptions | None = None) -> CompiledModel:
    """Compiles ``graph`` for ``target`` (cached on disk by content); ``progress(str)`` hears each stage.
    ``instrument``: a separate build whose every op is timed (see ``CompiledModel.profile``). ``known``: the
    record of an earlier build of this very graph (``CompiledModel.build_record``), loaded without lowering when
    still usable."""
    global _NATIVE_BUILDS
    if target not in TARGETS:
        raise CompileError(f"unknown target {target!r}; available: {', '.join(TARGETS)}")
    options = options or KernelOptions()
    chosen = select_kernels(graph, options)  # (on the caller's graph: the compiled model shows the choices)
    _report(progress, "kernels: " + (", ".join(f"{n} {name}" for name, n in sorted(chosen.items())) or "generic")
            + f" (options: {options.describe()})")
    if known is not None and known.usable():
        start = time.perf_counter()
        _report(progress, f"loading cached build {cache.cache_root() / known.folder}")
        constants = graph
        if any(node.op_type in SUBGRAPHS for node in graph.op_nodes()):
            constants = graph.copy()  # lowering hoists subgraphs' constants into the graph: do it again
            hoist_branch_constants(constants)
        weights = {name: weight_value(constants.constant, name) for name in known.weights}
        compiled = _load(graph, cache.cache_root() / known.folder, weights, target, instrument, False, start)
        _report(progress, f"loaded in {compiled.build_seconds:.1f} s")
        return compiled
    sdfg, weights = lower(graph)
    sdfg.name = "model"  # the cache key must not depend on the model's name
    key = cache.build_key(sdfg.hash_sdfg(), target, instrument, options.key())
    sdfg.name = f"{graph.name}_{key[:12]}"
    folder = cache.cache_root() / sdfg.name
    start = time.perf_counter()
    try:
        with cache.exclusive_build(folder) as built:
            if built:
                _report(progress, f"expanding {len(graph.op_nodes())} ops into maps, tasklets and BLAS calls")
                expand(sdfg, instrument)
                if options.memory_reuse:
                    plan = reuse_transients(sdfg)
                    verify_buffer_sharing(sdfg, plan.tenants)
                _report(progress, f"generating C++ and building with cmake in {folder}")
                sdfg.build_folder = str(folder)
                with _heartbeat(progress, "still compiling"), dace.config.temporary_config():
                    # An instrumented program writes one timing report per call (profile() reads them).
                    dace.Config.set("instrumentation", "report_each_invocation", value=instrument)
                    dace.Config.set("compiler", "cpu", "args", value=cache.cpu_args())
                    if instrument:
                        # DaCe emits one function for structurally equal nested SDFGs, timer ids included,
                        # which would credit e.g. the K projection's time to the Q projection.
                        dace.Config.set("compiler", "unique_functions", value="none")
                    sdfg.compile(return_program_handle=False)
                # An instrumented build keeps its whole SDFG: profiling maps the timers to its nested SDFGs.
                (sdfg if instrument else _signature_sdfg(sdfg)).save(str(folder / SIGNATURE_FILE))
                _NATIVE_BUILDS += 1
            else:
                _report(progress, f"loading cached build {folder}")
    except (CompileError, VerificationError):  # a memory plan the verifier refused is a bug, said as such
        raise
    except Exception as error:  # codegen and the C++ toolchain raise many unrelated types
        raise CompileError(f"building {graph.name!r} for {target} failed: {type(error).__name__}: {error}") \
            from error
    compiled = _load(graph, folder, weights, target, instrument, built, start)
    _report(progress, f"{'built' if built else 'loaded'} in {compiled.build_seconds:.1f} s")
    return compiled


def _load(graph: Graph, folder: pathlib.Path, weights: dict, target: str, instrument: bool, built: bool,
          start: float) -> CompiledModel:
    try:
        configure_native_runtime()  # before the native library (with OpenMP and OpenBLAS) is loaded
        program = dace.codegen.compiler.load_precompiled_sdfg(
            folder, sdfg=dace.SDFG.from_file(str(folder / SIGNATURE_FILE)))
    except Exception as error:  # a damaged build folder, a library that does not load
        raise CompileError(f"loading the build of {graph.name!r} from {folder} failed: {type(error).__name__}: "
                           f"{error}") from error
    compiled = CompiledModel(graph, program, weights, pathlib.Path(folder), built=built,
                             build_seconds=time.perf_counter() - start, target=target, instrumented=instrument)
    compiled.build_record = BuildRecord(folder.name, tuple(weights), cache.codegen_digest())
    return compiled
