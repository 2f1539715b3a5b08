"""The C++ kernels in codegen/kernels/ (headers the generated code includes): each has a standalone unit test in
tests/codegen/kernels/, compiled here with the flags sdflow builds with and run; it checks the kernel against a
reference of its own and prints "ok". Each is built twice: for this CPU (its AVX-512 forms where it has AVX-512) and
for a baseline x86-64 (SSE4.2: the portable forms), so both stay tested on any development machine. A source that
needs a library says so in a line ``// libraries: openblas`` (linked as ``-lopenblas``)."""
from __future__ import annotations

import pathlib
import platform
import re
import shutil
import subprocess

import pytest

from sdflow.codegen.cache import KERNELS_DIR

TESTS = sorted((pathlib.Path(__file__).parent / "kernels").glob("*_test.cpp"))
def libraries(source: pathlib.Path) -> list[str]:
    """The ``-l`` flags a unit test or microbenchmark names in its ``// libraries:`` line."""
    found = re.search(r"^// libraries: (.+)$", source.read_text(), re.MULTILINE)
    return [f"-l{name}" for name in found[1].split()] if found else []


TARGETS = ["-march=native"] + (["-march=x86-64-v2"] if platform.machine() in ("x86_64", "AMD64") else [])


def test_every_kernel_has_a_unit_test():
    kernels = {p.stem for p in KERNELS_DIR.glob("*.h")}
    assert kernels and kernels == {p.name.removesuffix("_test.cpp") for p in TESTS}


@pytest.mark.parametrize("target", TARGETS, ids=[t.partition("=")[2] for t in TARGETS])
@pytest.mark.parametrize("source", TESTS, ids=[p.stem for p in TESTS])
def test_kernel_unit_test_passes(source, target, tmp_path):
    compiler = shutil.which("g++") or shutil.which("c++")
    binary = tmp_path / source.stem
    subprocess.run([compiler, "-O2", target, "-fopenmp", "-std=c++17", f"-I{KERNELS_DIR}", str(source),
                    "-o", str(binary), *libraries(source)], check=True, capture_output=True, text=True)
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


@pytest.mark.skipif(not __import__("sdflow.codegen.threads", fromlist=["has_avx512"]).has_avx512(),
                    reason="the AVX-512 register tiles are compiled only where the CPU has AVX-512")
@pytest.mark.parametrize("source", ["conv_direct_test.cpp", "conv_test.cpp", "gemm_test.cpp"])
def test_register_tiles_stay_in_registers(source, tmp_path):
    """The AVX-512 micro-kernels keep their accumulators in registers: no FMA is followed by a store of a vector
    register to the stack (gcc 12 did that for the direct convolution's 24-accumulator tile when an index depended
    on a run-time value, and for the depthwise rows: 2-3x slower, and every number still right, so only this check
    sees it)."""
    compiler = shutil.which("g++") or shutil.which("c++")
    binary = tmp_path / "kernel"
    path = pathlib.Path(__file__).parent / "kernels" / source
    subprocess.run([compiler, "-O3", "-march=native", "-fopenmp", "-std=c++17", f"-I{KERNELS_DIR}", str(path),
                    "-o", str(binary)], check=True, capture_output=True, text=True)
    listing = subprocess.run(["objdump", "-d", "--no-show-raw-insn", "-C", str(binary)], check=True,
                             capture_output=True, text=True).stdout.splitlines()
    spills, function = set(), ""
    for line, following in zip(listing, listing[1:]):
        if line.endswith(">:"):
            function = line
        elif "vfmadd231ps" in line and re.search(r"vmovaps\s+%zmm\d+,.*\(%rsp\)", following):
            spills.add(function)
    assert not spills, f"accumulators spilled to the stack in {sorted(spills)}"


@pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64"), reason="x86 only")
def test_the_avx2_gemm_tile_stays_in_registers(tmp_path):
    """gemm.h's AVX2 + FMA tile (compiled for Haswell, so any x86 machine checks it): no FMA is followed by a store
    of a ymm register to the stack (gcc 12 kept a 2-D array of accumulators in memory, one store per FMA, until
    the loops over rows were unrolled and each column vector got an array of its own)."""
    compiler = shutil.which("g++") or shutil.which("c++")
    binary = tmp_path / "kernel"
    path = pathlib.Path(__file__).parent / "kernels" / "gemm_test.cpp"
    subprocess.run([compiler, "-O3", "-march=haswell", "-fopenmp", "-std=c++17", f"-I{KERNELS_DIR}", str(path),
                    "-c", "-o", str(binary)], check=True, capture_output=True, text=True)
    listing = subprocess.run(["objdump", "-d", "--no-show-raw-insn", "-C", str(binary)], check=True,
                             capture_output=True, text=True).stdout.splitlines()
    spills, fmas, function = set(), 0, ""
    for line, following in zip(listing, listing[1:]):
        if line.endswith(">:"):
            function = line
        elif "vfmadd231ps" in line and "%ymm" in line and "sdflow_kernels::gemm::" in function:
            fmas += 1
            if re.search(r"vmovaps\s+%ymm\d+,.*\(%rsp\)", following):
                spills.add(function)
    assert fmas > 0  # the AVX2 tile was compiled (and the check looked at it)
    assert not spills, f"accumulators spilled to the stack in {sorted(spills)}"
