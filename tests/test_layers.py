"""The layering of DESIGN.md (ir <- frontends <- driver; ir <- passes <- codegen <- driver) is an
import-linter contract in setup.cfg; this runs it."""
from __future__ import annotations

import os
import pathlib
import shutil
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
LAYERS = {"ir": "ir", "frontends": "frontends", "passes": "passes", "codegen": "codegen"}


def test_import_contracts_hold(tmp_path):
    # import-linter walks the package's folder on disk; setup.cfg's package_dir mapping (sdflow.ir = ir/, ...)
    # exists only once installed, so lay the package out as an install would.
    package = tmp_path / "sdflow"
    shutil.copytree(ROOT / "sdflow", package, ignore=shutil.ignore_patterns("__pycache__"))
    for name, folder in LAYERS.items():
        shutil.copytree(ROOT / folder, package / name, ignore=shutil.ignore_patterns("__pycache__"))
    lint = shutil.which("lint-imports") or str(pathlib.Path(sys.executable).parent / "lint-imports")
    env = dict(os.environ, PYTHONPATH=str(tmp_path))
    result = subprocess.run([lint, str(ROOT / "setup.cfg")], capture_output=True, text=True, cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 kept, 0 broken" in result.stdout
