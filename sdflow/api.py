"""The Python API: load a model into the IR, optimise it with a pass pipeline, compile it to a callable."""
from __future__ import annotations

import hashlib
import os
import pathlib
import sys

import numpy as np
import onnx

from sdflow import graph_cache
from sdflow.codegen import CompiledModel, build
from sdflow.codegen.options import KernelOptions, parse_options
from sdflow.fallback import FallbackModel, PartitionedModel, host_node_indices
from sdflow.frontends.onnx import import_model, load_model, unsupported_node_indices, value_dependent_inputs
from sdflow.ir import Graph, PipelineError, ShapeInferenceError, UnsupportedOpError, verify
from sdflow.passes import PassContext, parse_pipeline, run_pipeline
from sdflow.specialize import ValueSpecializedModel

from sdflow import DEFAULT_PASSES

__all__ = ["load", "optimize", "compile", "CompiledModel", "ValueSpecializedModel", "PartitionedModel", "FallbackModel",
           "DEFAULT_PASSES"]


def load(model, name: str | None = None, dace_validation: bool = True) -> Graph:
    """The IR graph of ``model``: an ONNX path/bytes/ModelProto, a saved ``.sdfg`` path, or a Graph (copied).
    The result is verified (``dace_validation=False`` leaves out DaCe's own, slower, SDFG validation)."""
    if isinstance(model, Graph):
        return model.copy()
    if isinstance(model, (str, os.PathLike)) and str(model).endswith((".sdfg", ".sdfgz")):
        graph = Graph.load(model)
    else:
        graph = import_model(model, name)
    verify(graph, dace_validation=dace_validation)
    return graph


def optimize(graph: Graph, passes: str = DEFAULT_PASSES, dump_dir=None, explain: bool = False,
             progress=None, after_each=None, calibration=None) -> Graph:
    """Runs the pipeline ``passes`` on a copy of ``graph`` and returns it; ``result.pass_records`` holds one
    record per pass (name, PassResult with stats and notes, seconds, dump path). ``after_each(label, graph)``
    sees the graph before the first pass (``input``) and after each pass. ``calibration``: example feeds for the
    passes that measure activations (see ``compile``)."""
    graph = graph.copy()
    ctx = PassContext(explain=explain, calibration=calibration_feeds(calibration))
    records = run_pipeline(graph, passes, dump_dir=dump_dir, ctx=ctx, progress=progress, after_each=after_each)
    graph.pass_records = records
    return graph


def _stderr_progress(message: str) -> None:
    print(f"[sdflow] {message}", file=sys.stderr, flush=True)


def calibration_feeds(calibration) -> tuple:
    """``calibration`` (None, a list of feeds - dicts of numpy arrays by ONNX input name - or a path to an .npz
    file whose arrays, one per input, hold one feed per index of their first axis) as a tuple of feeds."""
    if calibration is None:
        return ()
    if isinstance(calibration, (str, os.PathLike)):
        try:
            with np.load(calibration) as data:
                arrays = {name: data[name] for name in data.files}
        except (OSError, ValueError) as error:
            raise PipelineError(f"cannot read calibration file {str(calibration)!r}: {error}") from None
        counts = {len(a) if a.ndim else 0 for a in arrays.values()}
        if len(counts) != 1 or 0 in counts:
            raise PipelineError(f"calibration file {str(calibration)!r}: every array needs the same number of "
                                f"feeds along its first axis (got {sorted(counts)})")
        return tuple({name: a[i] for name, a in arrays.items()} for i in range(counts.pop()))
    feeds = tuple(calibration)
    if not all(isinstance(f, dict) for f in feeds):
        raise PipelineError("calibration must be a list of feeds (dicts of arrays by input name) or an .npz path")
    return feeds


def _calibration_digest(feeds: tuple) -> str:
    digest = hashlib.sha256()
    for feed in feeds:
        for name in sorted(feed):
            value = np.ascontiguousarray(feed[name])
            digest.update(f"{name}:{value.dtype}:{value.shape}".encode())
            digest.update(value.tobytes())
    return digest.hexdigest()[:24]


def compile(model, passes: str = DEFAULT_PASSES, target: str = "cpu", dump_dir=None, progress: bool = False,
            instrument: bool = False, value_inputs: str = "error",
            fallback: str = "error", threads: int | None = None,
            options=None, calibration=None):  # noqa: A001  (the natural name, as in torch.compile)
    """Loads, optimises and builds ``model``; the result is a callable (numpy in, :class:`Outputs` out).
    ``instrument=True`` builds a variant that times every op (``CompiledModel.profile``).
    ``value_inputs``: what to do when graph inputs feed shape-like op inputs (a Reshape's shape, a Slice's
    starts, ...), whose values sdflow needs at compile time: ``"error"`` (the import names the node) or
    ``"specialize"`` (a :class:`ValueSpecializedModel` that compiles once per distinct set of their values).
    ``fallback``: ``"error"`` (unsupported ops are an :class:`UnsupportedOpError`) or ``"reference"``
    (a :class:`PartitionedModel` whose unsupported nodes ONNX Runtime runs; they are listed in ``fallback_nodes``
    and reported). A model with ops whose output shapes depend on input values (NonZero, NonMaxSuppression,
    Unique, Compress with a run-time condition) is a :class:`PartitionedModel` too: sdflow's own kernels run those
    nodes between compiled parts (``host_nodes``).
    ``threads``: at most this many threads per call (default: OMP_NUM_THREADS, else the cores this process may
    use); each call takes fewer when fewer measure faster (``CompiledModel.set_threads``).
    ``options``: kernel choices (a dict, ``NAME=VALUE`` strings or a :class:`KernelOptions`: ``direct_conv``,
    ``winograd``, ``channel_vectors``, ``depthwise_rows``, ``depthwise_channels``, ``gemm`` = packed | blas,
    ``memory_reuse``); each op node's chosen kernel is its ``implementation`` in ``compiled.graph``, and builds are cached per options.
    ``calibration``: example feeds for passes that measure activations (``quantize-weights{method=gptq}``): a
    list of dicts by ONNX input name, or an ``.npz`` path (``calibration_feeds``); part of the graph cache key."""
    kernel_options = parse_options(options)
    feeds = calibration_feeds(calibration)
    if threads is not None and (not isinstance(threads, int) or threads < 1):
        raise ValueError(f"threads must be a positive integer, not {threads!r}")
    if value_inputs not in ("error", "specialize"):
        raise ValueError(f"value_inputs must be 'error' or 'specialize', not {value_inputs!r}")
    if fallback not in ("error", "reference"):
        raise ValueError(f"fallback must be 'error' or 'reference', not {fallback!r}")
    options = dict(passes=passes, target=target, dump_dir=dump_dir, progress=progress, instrument=instrument,
                   threads=threads, options=kernel_options, calibration=feeds or None)
    report = _stderr_progress if progress else None
    if value_inputs == "specialize" or fallback == "reference":
        proto = load_model(model)
        partitioned = _partitioned(proto, fallback == "reference", options, report)
        if partitioned is not None:
            return partitioned
        names = value_dependent_inputs(proto) if value_inputs == "specialize" else []
        if names:
            return ValueSpecializedModel(proto, names, lambda specialized: compile(specialized, **options))
    if report:
        report(f"loading {_describe(model)}")
    pipeline = parse_pipeline(passes)
    key = graph_cache.graph_key(model, pipeline, _calibration_digest(feeds) if feeds else "") \
        if dump_dir is None else None
    cached = graph_cache.load_graph(key) if key else None
    if cached:
        graph, records = cached
        if report:
            report(f"optimised graph from the cache ({len(records)} passes, {len(graph.op_nodes())} ops)")
    else:
        # DaCe's validation runs once: after the last pass, or here when there is none.
        try:
            graph = load(model, dace_validation=not pipeline)
        except (UnsupportedOpError, ShapeInferenceError):
            # Ops whose output shapes depend on input values (no IR op; a Compress with a run-time condition cannot
            # infer its output) make the model run in parts.
            partitioned = _partitioned(load_model(model), False, options, report)
            if partitioned is None:
                raise
            return partitioned
        # The freshly loaded graph is ours alone: run the pipeline in place rather than on a copy.
        records = run_pipeline(graph, pipeline, dump_dir=dump_dir, progress=report,
                               ctx=PassContext(calibration=feeds))
        if key:
            graph_cache.store_graph(key, graph, records)
    build_name = f"{target}/{'instrumented' if instrument else 'plain'}"
    if kernel_options != KernelOptions():
        build_name += "/" + hashlib.sha256(kernel_options.key().encode()).hexdigest()[:16]
    known = graph_cache.load_builds(key).get(build_name) if cached else None
    compiled = build(graph, target, progress=report, instrument=instrument, known=known, options=kernel_options)
    if key and compiled.build_record != known:
        graph_cache.store_build(key, build_name, compiled.build_record)
    compiled.pass_records = records
    compiled.graph_from_cache = cached is not None
    if threads is not None:
        compiled.set_threads(threads)
    return compiled


def _partitioned(proto: onnx.ModelProto, fallback: bool, options: dict, report) -> PartitionedModel | None:
    """``proto`` as a PartitionedModel when it has nodes to run between compiled parts (data-dependent ops, and with
    ``fallback`` the nodes sdflow has no op for), else None."""
    host = host_node_indices(proto)
    if not host and not (fallback and unsupported_node_indices(proto)):
        return None
    partitioned = PartitionedModel(proto, lambda part: compile(part, value_inputs="specialize", **options),
                                   fallback=fallback)
    if report and partitioned.host_nodes:
        report(f"sdflow's dynamic-shape kernels run {len(partitioned.host_nodes)} node(s) between compiled parts: "
               + ", ".join(partitioned.host_nodes))
    if report and partitioned.fallback_nodes:
        report(f"ONNX Runtime runs {len(partitioned.fallback_nodes)} node(s) sdflow has no op for: "
               + ", ".join(partitioned.fallback_nodes))
    return partitioned


def _describe(model) -> str:
    if isinstance(model, (str, os.PathLike)):
        return str(pathlib.Path(model))
    if isinstance(model, onnx.ModelProto):
        return f"ONNX model {model.graph.name!r}"
    return type(model).__name__
