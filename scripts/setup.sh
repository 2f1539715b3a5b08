#!/usr/bin/env bash
# Installs everything sdflow needs on a fresh Debian machine: the system packages (OpenBLAS, its OpenMP build
# (see codegen/threads.py) and LAPACKE for BLAS-backed MatMul/Conv, a C++ toolchain and CMake for DaCe's builds)
# and a virtual environment .venv with sdflow (editable) and its test tools. `setup.sh test` also installs
# Chromium and its WebDriver, which the viewer's browser tests drive. Re-running is cheap: each step is skipped
# when already done.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(libopenblas-dev libopenblas0-openmp liblapacke-dev g++ cmake make)
if [ "${1:-}" = "test" ]; then
    APT_PACKAGES+=(chromium chromium-driver)
fi
missing=()
for package in "${APT_PACKAGES[@]}"; do
    dpkg -s "$package" >/dev/null 2>&1 || missing+=("$package")
done
if ((${#missing[@]})); then
    echo "[setup] installing Debian packages: ${missing[*]}"
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    echo "[setup] creating .venv with $($PYTHON --version)"
    if ! "$PYTHON" -m venv .venv 2>/dev/null; then
        # Debian's own Python keeps venv in a separate package.
        rm -rf .venv
        SUDO=""
        [ "$(id -u)" -eq 0 ] || SUDO="sudo"
        $SUDO apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq python3-venv >/dev/null
        "$PYTHON" -m venv .venv
    fi
fi
STAMP=.venv/.sdflow-setup-stamp
WANT="$(cat setup.cfg setup.py pyproject.toml | sha256sum | cut -d' ' -f1)"
if [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "$WANT" ]; then
    echo "[setup] installing sdflow, its dependencies and the real-model tools into .venv (a few minutes once)"
    .venv/bin/python -m pip install -q --upgrade pip
    .venv/bin/python -m pip install -q -e '.[test,models]'
    echo "$WANT" > "$STAMP"
fi
.venv/bin/python scripts/vscode_settings.py
