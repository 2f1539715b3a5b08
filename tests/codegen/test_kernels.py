"""The C++ kernels in codegen/kernels/ (headers the generated code includes): each has a standalone unit test in
tests/codegen/kernels/, compiled here with the flags sdflow builds with and run; it checks the kernel against a
reference of its own and prints "ok"."""
from __future__ import annotations

import pathlib
import shutil
import subprocess

import pytest

from sdflow.codegen.cache import KERNELS_DIR

TESTS = sorted((pathlib.Path(__file__).parent / "kernels").glob("*_test.cpp"))


def test_every_kernel_has_a_unit_test():
    kernels = {p.stem for p in KERNELS_DIR.glob("*.h")}
    assert kernels and kernels == {p.name.removesuffix("_test.cpp") for p in TESTS}


@pytest.mark.parametrize("source", TESTS, ids=[p.stem for p in TESTS])
def test_kernel_unit_test_passes(source, tmp_path):
    compiler = shutil.which("g++") or shutil.which("c++")
    binary = tmp_path / source.stem
    subprocess.run([compiler, "-O2", "-march=native", "-fopenmp", "-std=c++17", f"-I{KERNELS_DIR}", str(source),
                    "-o", str(binary)], check=True, capture_output=True, text=True)
    finished = subprocess.run([str(binary)], capture_output=True, text=True, timeout=120)
    assert finished.returncode == 0 and finished.stdout.strip() == "ok", finished.stdout + finished.stderr


BENCHMARKS = sorted((pathlib.Path(__file__).parents[2] / "benchmarks" / "kernels").glob("*_bench.cpp"))


def test_every_kernel_has_a_microbenchmark():
    assert {p.stem for p in KERNELS_DIR.glob("*.h")} == {p.name.removesuffix("_bench.cpp") for p in BENCHMARKS}


@pytest.mark.parametrize("source", BENCHMARKS, ids=[p.stem for p in BENCHMARKS])
def test_kernel_microbenchmark_compiles(source):
    """The microbenchmarks are run by hand (their headers say how); here they only have to keep compiling."""
    compiler = shutil.which("g++") or shutil.which("c++")
    subprocess.run([compiler, "-fsyntax-only", "-march=native", "-fopenmp", "-std=c++17", f"-I{KERNELS_DIR}",
                    str(source)], check=True, capture_output=True, text=True)
