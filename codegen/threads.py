"""Runtime settings of the native libraries, applied before the first compiled model is loaded.

- OpenBLAS kernels: Debian 12's OpenBLAS (0.3.21) does not recognise CPUs newer than itself and falls back to
  its SSE3 'Prescott' kernels, ~3x slower than its AVX2/AVX-512 ones. Unless the user chose OPENBLAS_CORETYPE,
  pick the best kernel family the CPU's flags allow.
- OpenMP waiting: idle OpenMP threads spin for a long time by default and then compete with OpenBLAS's own
  threads for the cores. Measured on 2 cores: ResNet-18 64 ms (default) / 29 ms (passive) / 35 ms (a short spin
  of GOMP_SPINCOUNT=20000); the small transformer example 0.12 / 0.53 / 0.12 ms. Unless the user set
  OMP_WAIT_POLICY or GOMP_SPINCOUNT, idle threads spin briefly, then sleep."""
from __future__ import annotations

import functools
import os
import subprocess
import sys

__all__ = ["configure_native_runtime", "configure_openblas"]

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


def configure_native_runtime() -> None:
    if "OMP_WAIT_POLICY" not in os.environ and "GOMP_SPINCOUNT" not in os.environ:
        os.environ["GOMP_SPINCOUNT"] = "20000"
    configure_openblas()
