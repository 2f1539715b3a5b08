"""The content-addressed build cache: one folder per distinct generated program, written atomically."""
from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import json
import os
import pathlib
import platform
import shutil
import subprocess

import dace

from sdflow import ir
from . import threads

__all__ = ["cache_root", "build_key", "codegen_digest", "exclusive_build", "is_complete", "CACHE_ENV", "KERNELS_DIR"]

CACHE_ENV = "SDFLOW_CACHE_DIR"
KERNELS_DIR = pathlib.Path(__file__).parent / "kernels"  # C++ headers, each with tests/codegen/kernels/<name>_test.cpp
_COMPLETE = "sdflow-complete.json"


def cache_root() -> pathlib.Path:
    """$SDFLOW_CACHE_DIR, else $XDG_CACHE_HOME/sdflow, else ~/.cache/sdflow."""
    if os.environ.get(CACHE_ENV):
        return pathlib.Path(os.environ[CACHE_ENV]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return pathlib.Path(base) / "sdflow"


@functools.cache
def codegen_digest() -> str:
    """Hash of the code generators and of the IR helpers they call (slice bounds, reduce axes, ...), so editing
    either invalidates the builds they made. Read once per process: that is the code this process runs (a file
    edited after the import would otherwise key the old code's builds by the new sources)."""
    digest = hashlib.sha256()
    for root in (pathlib.Path(__file__).parent, pathlib.Path(ir.__file__).parent):
        for path in sorted(list(root.rglob("*.py")) + list(root.rglob("*.h"))):  # (the kernels' headers too)
            digest.update(path.read_bytes())
    return digest.hexdigest()


def cpu_args() -> str:
    """DaCe's C++ flags without -freciprocal-math: x / s must round as IEEE division does, or a Round or a
    quantization after it flips values that sit on a .5 boundary (kernels that want a reciprocal write one).
    With -march=native on a CPU with AVX512-FP16, gcc 12 emits masked ``vmovsh`` forms that Debian 12's
    assembler rejects for float16 code; -mno-avx512fp16 keeps float16 arithmetic in float (as numpy computes it)."""
    flags = [f for f in dace.Config.get("compiler", "cpu", "args").split() if f != "-freciprocal-math"]
    if "-march=native" in flags and _compiler_accepts("-mno-avx512fp16"):
        flags.append("-mno-avx512fp16")
    flags.append(f"-I{KERNELS_DIR}")  # the kernel headers generated code includes (codegen/kernels)
    return " ".join(flags)


def cxx_compiler() -> str | None:
    """The C++ compiler's path: $CXX, else c++, else g++ (None when there is none)."""
    return shutil.which(os.environ.get("CXX", "c++")) or shutil.which("g++")


@functools.cache
def _compiler_accepts(flag: str) -> bool:
    compiler = cxx_compiler()
    if compiler is None:
        return False
    result = subprocess.run([compiler, flag, "-x", "c++", "-fsyntax-only", "-"], input="int main() {}\n",
                            capture_output=True, text=True)
    return result.returncode == 0


def build_key(sdfg_hash: str, target: str, instrument: bool = False, options: str = "") -> str:
    """``options``: ``KernelOptions.key()`` (the kernels chosen are in the SDFG as the nodes' implementations; the
    memory plan, made after expansion, is not, so every option is hashed here too)."""
    parts = {
        "sdfg": sdfg_hash,
        "target": target,
        "instrument": instrument,
        "dace": dace.__version__,
        "codegen": codegen_digest(),
        "cpu_args": cpu_args(),
        "avx512": threads.has_avx512(),
        "options": options,
        "machine": platform.machine(),
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:24]


def is_complete(folder: pathlib.Path) -> bool:
    return (folder / _COMPLETE).is_file()


@contextlib.contextmanager
def exclusive_build(folder: pathlib.Path):
    """Yields True when the caller must build into ``folder`` now, False when a complete build is there.

    A file lock serialises builders of one key: a second process waits, then finds the first one's complete
    build and only loads it, so concurrent compiles of one model both succeed. Readers trust a folder only once
    its completion marker exists (written last), so a crashed build is never half-used: it is rebuilt. The
    build happens in place because DaCe bakes the folder's path into the program (instrumentation reports)."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    with open(folder.parent / f".{folder.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if is_complete(folder):
                yield False
                return
            shutil.rmtree(folder, ignore_errors=True)
            yield True
            (folder / _COMPLETE).write_text(json.dumps({"folder": folder.name}))
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
