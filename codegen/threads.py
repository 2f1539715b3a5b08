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

__all__ = ["configure_native_runtime", "configure_openblas", "load_openmp_openblas", "has_avx512"]

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
