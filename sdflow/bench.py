"""``sdflow bench``: one model, sdflow against ONNX Runtime on the same machine and thread count.

Reports the median latency of both (warm-up first, runs interleaved), their ratio, cold and cached compile
time, sdflow's Python call overhead beyond the kernels, peak memory, the outputs' agreement, and the slowest ops
from DaCe's instrumentation. Thread counts must be fixed before any native library loads, so call
``pin_threads`` first (the CLI does) and run one benchmark per process (``benchmarks/run.py`` does).
"""
from __future__ import annotations

import dataclasses
import os
import resource
import statistics
import tempfile
import time

import numpy as np

from sdflow import DEFAULT_PASSES, zoo
from sdflow.feeds import concrete_shape, random_input

__all__ = ["pin_threads", "benchmark", "BenchResult", "parse_shapes"]


SETTLE_SECONDS = 0.2  # the pause before each timed block (see ``benchmark``)


def pin_threads(threads: int) -> None:
    for variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[variable] = str(threads)


def parse_shapes(items) -> dict[str, list[int]]:
    """['input_ids=1,128', ...] -> {'input_ids': [1, 128]}"""
    shapes = {}
    for item in items or []:
        name, _, dims = item.partition("=")
        shapes[name] = [int(d) for d in dims.split(",") if d]
    return shapes


@dataclasses.dataclass
class BenchResult:
    model: str
    threads: int
    shapes: dict
    sdflow_ms: float
    onnxruntime_ms: float
    ratio: float
    cold_compile_s: float
    cached_compile_s: float
    cached_compile_reused_build: bool  # the second compile loaded the first one's native build
    call_overhead_ms: float
    sdflow_peak_rss_mib: float
    total_peak_rss_mib: float
    max_abs_error: float
    reference_magnitude: float
    outputs_match: bool
    top_ops: list  # [{"label", "op_type", "ms"}], slowest first
    time_by_op_type: dict  # op_type -> ms (instrumented build)


def _feeds(compiled, shapes: dict, defaults: dict, seed: int = 0) -> dict[str, np.ndarray]:
    """Token ids in [0, 1000) (every zoo vocabulary is larger), masks of ones, normal floats."""
    rng = np.random.default_rng(seed)
    feeds = {}
    for name, ttype in compiled.input_types.items():
        shape = shapes.get(name) or concrete_shape(name, ttype, defaults, f"give --shape {name}=D0,D1,...")
        feeds[name] = random_input(rng, name, ttype, shape, int_high=1000)
    return feeds


def _rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def benchmark(model: str, shapes: dict | None = None, threads: int = 2, runs: int = 20, warmup: int = 3,
              passes: str = DEFAULT_PASSES, reduced: bool = False, top: int = 10, progress=None,
              options=None) -> BenchResult:
    from sdflow import api
    from sdflow.ort import compare_outputs, ort_session

    path = zoo.resolve(model, reduced)
    defaults = zoo.ENTRIES[model].default_dims if model in zoo.ENTRIES else {"batch": 1, "seq": zoo.SEQUENCE}
    with tempfile.TemporaryDirectory(prefix="sdflow-bench-cache-") as cold_cache:
        saved = os.environ.get("SDFLOW_CACHE_DIR")
        os.environ["SDFLOW_CACHE_DIR"] = cold_cache
        try:
            start = time.perf_counter()
            api.compile(path, passes=passes, progress=progress, options=options)
            cold = time.perf_counter() - start
            start = time.perf_counter()
            compiled = api.compile(path, passes=passes, options=options)
            cached = time.perf_counter() - start
        finally:
            if saved is None:
                os.environ.pop("SDFLOW_CACHE_DIR")
            else:
                os.environ["SDFLOW_CACHE_DIR"] = saved
    feeds = _feeds(compiled, shapes or {}, defaults)
    outputs = compiled(**feeds).as_dict()
    sdflow_rss = _rss_mib()

    session = ort_session(path, threads)
    names = [o.name for o in session.get_outputs()]
    reference = dict(zip(names, session.run(names, feeds)))
    comparisons = compare_outputs(outputs, reference)

    def timed(function):
        start = time.perf_counter()
        function()
        return time.perf_counter() - start

    for _ in range(warmup):
        compiled(**feeds)
        session.run(names, feeds)
    # Interleaved in blocks, so that drift on a shared machine hits both alike. Each block starts after a pause:
    # ONNX Runtime's idle workers spin for 30-100 ms after a run (measured here), and a thread spinning on one of
    # the two cores stalls every OpenMP barrier of the other runtime (a 0.04 ms kernel took 0.9 ms). The first
    # run of each block is dropped (cold caches).
    # The call overhead is what a call does in Python beyond the kernels: checking the inputs, binding the dims,
    # allocating the outputs and building the argument list (``prepare``), timed on its own (the difference of a
    # whole call's and the kernels' medians is dominated by the machine's drift).
    ours, theirs, overheads = [], [], []
    block = 5

    def timed_block(function):
        time.sleep(SETTLE_SECONDS)
        return [timed(function) for _ in range(block)][1:]

    for _ in range(max(1, runs // (block - 1))):
        ours += timed_block(lambda: compiled(**feeds))
        theirs += timed_block(lambda: session.run(names, feeds))
        overheads += timed_block(lambda: compiled.prepare(**feeds))
    sdflow_ms, ort_ms = statistics.median(ours) * 1e3, statistics.median(theirs) * 1e3
    overhead_ms = statistics.median(overheads) * 1e3

    profiled = api.compile(path, passes=passes, instrument=True)
    time.sleep(SETTLE_SECONDS)
    op_times = profiled.profile(**feeds, runs=5)
    by_type: dict[str, float] = {}
    for op_time in op_times:
        by_type[op_time.op_type] = by_type.get(op_time.op_type, 0.0) + op_time.milliseconds
    return BenchResult(
        model=model, threads=threads, shapes={n: list(a.shape) for n, a in feeds.items()},
        sdflow_ms=sdflow_ms, onnxruntime_ms=ort_ms, ratio=sdflow_ms / ort_ms, cold_compile_s=cold,
        cached_compile_s=cached, cached_compile_reused_build=not compiled.built, call_overhead_ms=overhead_ms, sdflow_peak_rss_mib=sdflow_rss,
        total_peak_rss_mib=_rss_mib(), max_abs_error=max(c.max_abs_error for c in comparisons),
        reference_magnitude=max(c.reference_magnitude for c in comparisons),
        outputs_match=all(c.ok for c in comparisons),
        top_ops=[{"label": t.label, "op_type": t.op_type, "ms": t.milliseconds} for t in op_times[:top]],
        time_by_op_type=dict(sorted(by_type.items(), key=lambda kv: -kv[1])))


def format_result(result: BenchResult) -> str:
    lines = [
        f"{result.model}: {result.shapes}, {result.threads} threads",
        f"  sdflow {result.sdflow_ms:.2f} ms, onnxruntime {result.onnxruntime_ms:.2f} ms, ratio {result.ratio:.2f}x",
        f"  compile: cold {result.cold_compile_s:.1f} s, cached {result.cached_compile_s:.2f} s; "
        f"call overhead {result.call_overhead_ms:.3f} ms",
        f"  peak RSS: sdflow {result.sdflow_peak_rss_mib:.0f} MiB, with onnxruntime {result.total_peak_rss_mib:.0f} MiB",
        f"  outputs {'match' if result.outputs_match else 'DO NOT match'} onnxruntime (max abs err "
        f"{result.max_abs_error:.2e}, max |ref| {result.reference_magnitude:.2e})",
        "  time by op type (instrumented build): " + ", ".join(
            f"{k} {v:.2f} ms" for k, v in list(result.time_by_op_type.items())[:6]),
        "  slowest ops:",
    ]
    lines += [f"    {op['ms']:8.3f} ms  {op['op_type']:<18} {op['label']}" for op in result.top_ops]
    return "\n".join(lines)
