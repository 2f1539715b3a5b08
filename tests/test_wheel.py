"""The built wheel holds every package of the tree and works without the source tree: it is built, installed into
a fresh virtual environment (dependencies taken from this one's site-packages, nothing downloaded) and used there to
compile and run a model (and one whose C++ kernels are built from the installed package's sources)."""
from __future__ import annotations

import pathlib
import runpy
import subprocess
import sys
import sysconfig
import zipfile

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.compiled

_SCRIPT = """
import pathlib, sys
import numpy as np
from onnx import TensorProto, helper
import sdflow
assert pathlib.Path(sdflow.__file__).is_relative_to(sys.prefix), sdflow.__file__
graph = helper.make_graph([helper.make_node("Relu", ["x"], ["r"]), helper.make_node("MatMul", ["r", "x"], ["y"])],
                          "wheel", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [3, 3])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [3, 3])])
model = sdflow.compile(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]))
x = np.arange(9, dtype=np.float32).reshape(3, 3) - 4
np.testing.assert_allclose(model(x)[0], np.maximum(x, 0) @ x, rtol=1e-6)
# A data-dependent op: its C++ (codegen/kernels/dynamic_ops.cpp) ships in the wheel and builds from there.
graph = helper.make_graph([helper.make_node("NonZero", ["x"], ["y"])], "nonzero",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [3, 3])],
                          [helper.make_tensor_value_info("y", TensorProto.INT64, [2, "k"])])
model = sdflow.compile(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]))
np.testing.assert_array_equal(model(x)[0], np.array(np.nonzero(x)))
print("wheel ok", sdflow.__file__)
"""


def test_wheel_installs_into_a_fresh_venv_and_compiles(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(tmp_path / "dist"), str(ROOT)], check=True, capture_output=True)
    wheel = next((tmp_path / "dist").glob("sdflow-*.whl"))
    with zipfile.ZipFile(wheel) as archive:
        packaged = {str(pathlib.PurePosixPath(n).parent).replace("/", ".") for n in archive.namelist()
                    if n.endswith("/__init__.py")}
    expected = set(runpy.run_path(str(ROOT / "setup.py"), run_name="setup")["packages"]())
    assert expected <= packaged and "sdflow.passes.fusion" in packaged, sorted(expected - packaged)

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          check=True, capture_output=True, text=True).stdout.strip()
    # This environment's packages as plain path entries (no .pth of theirs runs, so not its editable sdflow).
    (pathlib.Path(site) / "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run([str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)], check=True,
                   capture_output=True)
    result = subprocess.run([str(python), "-c", _SCRIPT], capture_output=True, text=True, cwd=tmp_path,
                            env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "SDFLOW_CACHE_DIR": str(tmp_path / "c")})
    assert result.returncode == 0, result.stdout + result.stderr
    assert "wheel ok" in result.stdout and str(venv) in result.stdout
