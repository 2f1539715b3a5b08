"""Runtime settings of the native libraries, applied before the first compiled model is loaded.

- OpenBLAS kernels: Debian 12's OpenBLAS (0.3.21) does not recognise CPUs newer than itself and falls back to
  its SSE3 'Prescott' kernels, ~3x slower than its AVX2/AVX-512 ones. Unless the user chose OPENBLAS_CORETYPE,
  pick the best kernel family the CPU's flags allow.
- OpenMP waiting: idle OpenMP threads spin for a long time by default and then compete with OpenBLAS's own
  threads for the cores. Measured on 2 cores: ResNet-18 64 ms (default) / 29 ms (passive) / 35 ms (a short spin
  of GOMP_SPINCOUNT=20000); the small transformer example 0.12 / 0.53 / 0.12 ms. Unless the user set
  OMP_WAIT_POLICY or GOMP_SPINCOUNT, idle threads spin briefly, then sleep.
- One thread pool: Debian's default OpenBLAS runs its own pthreads, which spin after each GEMM while the next
  kernel's OpenMP threads wait for the cores (MobileNetV2's 1x1 convolutions: 0.5 ms each in the model, 0.08 ms
  alone). Debian's OpenMP build of the same OpenBLAS (``libopenblas0-openmp``, installed by scripts/setup.sh)
  shares the program's OpenMP threads; where it is installed it is loaded first, so that the models' ``libblas``
  and ``liblapack`` resolve to it (MobileNetV2 39.6 -> 21.1 ms, ResNet-18 43.3 -> 34.4 ms on 2 cores).
  ``SDFLOW_OPENBLAS=system`` keeps the system's choice."""
from __future__ import annotations

import ctypes
import functools
import os
import subprocess
import sys
import threading
import time

__all__ = ["configure_native_runtime", "configure_openblas", "load_openmp_openblas", "has_avx512", "ThreadPolicy",
           "default_threads"]

_GENERIC = {"Prescott", "Core2", "Penryn", "Dunnington", "Nehalem", "Atom", "Katmai", "Banias"}
_PROBE = ("import ctypes, ctypes.util\n"
          "lib = ctypes.CDLL(ctypes.util.find_library('openblas') or 'libopenblas.so.0')\n"
          "lib.openblas_get_corename.restype = ctypes.c_char_p\n"
          "print(lib.openblas_get_corename().decode())")


def _cpu_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


@functools.cache
def has_avx512() -> bool:
    """Whether this CPU runs AVX-512 (F): the direct convolution kernels are written for it."""
    return "avx512f" in _cpu_flags()


@functools.cache
def configure_openblas() -> str | None:
    """Sets OPENBLAS_CORETYPE when OpenBLAS would use generic kernels on a CPU with AVX2/AVX-512; returns it."""
    if "OPENBLAS_CORETYPE" in os.environ:
        return os.environ["OPENBLAS_CORETYPE"]
    flags = _cpu_flags()
    if {"avx512f", "avx512bw", "avx512vl", "avx512dq", "avx512cd"} <= flags:
        better = "SkylakeX"
    elif {"avx2", "fma"} <= flags:
        better = "Haswell"
    else:
        return None
    # Ask a child process which kernels OpenBLAS picks by itself (it decides once, when loaded).
    try:
        detected = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True,
                                  timeout=30).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    if detected in _GENERIC:
        os.environ["OPENBLAS_CORETYPE"] = better
        return better
    return None


OPENMP_OPENBLAS = "/usr/lib/x86_64-linux-gnu/openblas-openmp"


@functools.cache
def load_openmp_openblas() -> bool:
    """Loads the OpenMP build of OpenBLAS (and its libblas/liblapack) into the process, when installed and
    not declined by ``SDFLOW_OPENBLAS=system``; True when it is loaded."""
    if os.environ.get("SDFLOW_OPENBLAS", "openmp") == "system" or not os.path.isdir(OPENMP_OPENBLAS):
        return False
    try:
        for name in ("libopenblas.so.0", "libblas.so.3", "liblapack.so.3"):
            ctypes.CDLL(os.path.join(OPENMP_OPENBLAS, name), mode=ctypes.RTLD_GLOBAL)
    except OSError:
        return False
    return True


def configure_native_runtime() -> None:
    if "OMP_WAIT_POLICY" not in os.environ and "GOMP_SPINCOUNT" not in os.environ:
        os.environ["GOMP_SPINCOUNT"] = "20000"
    configure_openblas()
    load_openmp_openblas()


@functools.cache
def _openmp():
    """The OpenMP runtime the compiled models use (gcc's libgomp, one copy per process), or None."""
    try:
        return ctypes.CDLL("libgomp.so.1")
    except OSError:
        return None


_SET = threading.local()  # the count this module last gave OpenMP in each thread (a per-thread setting)


def _set_openmp_threads(count: int) -> None:
    """``omp_set_num_threads(count)`` for the calling thread's next parallel regions, skipped when this module set
    that count last (the ctypes call is a few microseconds of a small model's call)."""
    if getattr(_SET, "count", None) == count:
        return
    openmp = _openmp()
    if openmp is not None:
        openmp.omp_set_num_threads(count)
        _SET.count = count


def default_threads() -> int:
    """OMP_NUM_THREADS when set, else the cores this process may run on."""
    try:
        return max(1, int(os.environ.get("OMP_NUM_THREADS", "").split(",")[0]))
    except ValueError:
        return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)


class ThreadPolicy:
    """How many OpenMP threads each call of a compiled model gets: at most ``limit``; with ``adaptive``, fewer when
    fewer measure faster.

    A model is a sequence of parallel regions, each ending at a barrier that waits for every thread of the team.
    When another process takes one of the cores, the thread on it arrives late at every barrier, and a model of
    many short ops (a small transformer: ~100 regions per call) slows down far more than its share of the machine
    (see docs/performance.md). Small models also run faster on one thread on a quiet machine (a region's start
    and end cost more than their work). So the policy times every call (``time.perf_counter`` around the native
    call) and compares thread counts on the model itself: after a warm-up it tries ``limit`` and then 1 thread
    (and the halvings between on bigger machines), moves to the fastest when it is at least 10% faster, and probes
    again when the current count's recent calls turn 30% slower than its best (a machine that got busy), or after
    a number of calls that doubles each time a probe confirms the choice (up to 256: a machine that got quiet
    again). Thread counts
    do not change results: every kernel splits work over outputs, never a sum over threads (checked by
    tests/codegen/test_threads.py)."""

    WARMUP = 2  # calls at the limit before any timing counts (first touches of buffers, page faults)
    SAMPLES = 3  # calls per count when probing
    SLOWER = 1.3  # a count whose recent median is this much above its best is re-examined
    SWITCH = 0.9  # a probe moves to another count when its median is below this fraction of the current one's
    MAX_INTERVAL = 256

    def __init__(self, limit: int | None = None, adaptive: bool = True):
        self.limit = max(1, int(limit)) if limit else default_threads()
        self.adaptive = adaptive and _openmp() is not None and self.limit > 1
        levels, level = [], self.limit
        while level > 1:
            levels.append(level)
            level //= 2
        self.levels = levels + [1]
        self.current = self.limit
        self.calls = 0
        self._recent: dict[int, list[float]] = {n: [] for n in self.levels}
        self._best: dict[int, float] = {}
        self._queue: list[int] = []  # thread counts of the probe in progress, one per call
        self._interval = 16
        self._next_probe = self.WARMUP

    def run(self, function, *args) -> None:
        """Calls ``function(*args)`` (the native program) on the chosen number of threads, timing it."""
        threads = self._choose()
        _set_openmp_threads(threads)
        start = time.perf_counter()
        try:
            function(*args)
        finally:
            self._record(threads, time.perf_counter() - start)

    def _choose(self) -> int:
        if not self.adaptive or self.calls < self.WARMUP:
            return self.limit if not self.adaptive else self.current
        if not self._queue and self.calls >= self._next_probe:
            others = [n for n in self.levels if n != self.current]
            self._queue = [n for n in others for _ in range(self.SAMPLES)] + [self.current] * self.SAMPLES
            for n in self.levels:
                self._recent[n] = []
        return self._queue[0] if self._queue else self.current

    def _record(self, threads: int, seconds: float) -> None:
        self.calls += 1
        if not self.adaptive or self.calls <= self.WARMUP:
            return
        recent = self._recent[threads]
        recent.append(seconds)
        del recent[:-5]
        median = _median(recent)
        if len(recent) >= self.SAMPLES:
            self._best[threads] = min(self._best.get(threads, median), median)
        if self._queue:
            self._queue.pop(0)
            if not self._queue:  # a probe finished: keep the fastest count
                previous = self.current
                measured = {n: _median(r) for n, r in self._recent.items() if r}
                fastest = min(measured, key=measured.get)
                if measured[fastest] < self.SWITCH * measured.get(previous, float("inf")):
                    self.current = fastest  # (a clear win only: a noisy probe does not move the count)
                self._interval = min(self._interval * 2, self.MAX_INTERVAL) if self.current == previous else 16
                self._next_probe = self.calls + self._interval
            return
        if len(recent) >= self.SAMPLES and median > self.SLOWER * self._best[threads]:
            self._next_probe = self.calls  # slower than it was: the machine changed, measure again
            self._best.pop(threads)


def _median(values: list[float]) -> float:
    """The median of a few timings (statistics.median's result, at a fraction of its cost per call)."""
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2
