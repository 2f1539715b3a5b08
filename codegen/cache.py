"""The content-addressed build cache: one folder per distinct generated program, written atomically."""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import pathlib
import platform
import shutil
import uuid

import dace

__all__ = ["cache_root", "build_key", "atomic_build_folder", "CACHE_ENV"]

CACHE_ENV = "SDFLOW_CACHE_DIR"
_COMPLETE = "sdflow-complete.json"


def cache_root() -> pathlib.Path:
    """$SDFLOW_CACHE_DIR, else $XDG_CACHE_HOME/sdflow, else ~/.cache/sdflow."""
    if os.environ.get(CACHE_ENV):
        return pathlib.Path(os.environ[CACHE_ENV]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return pathlib.Path(base) / "sdflow"


def _lowering_sources_digest() -> str:
    """Hash of the code generators themselves, so editing an expansion invalidates its builds."""
    digest = hashlib.sha256()
    root = pathlib.Path(__file__).parent
    for path in sorted(root.rglob("*.py")):
        digest.update(path.read_bytes())
    return digest.hexdigest()


def build_key(sdfg_hash: str, target: str) -> str:
    parts = {
        "sdfg": sdfg_hash,
        "target": target,
        "dace": dace.__version__,
        "codegen": _lowering_sources_digest(),
        "cpu_args": dace.Config.get("compiler", "cpu", "args"),
        "machine": platform.machine(),
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:24]


def is_complete(folder: pathlib.Path) -> bool:
    return (folder / _COMPLETE).is_file()


@contextlib.contextmanager
def atomic_build_folder(final: pathlib.Path):
    """Yields a private temporary folder to build in; on success it is renamed to ``final`` in one step.

    If another process finished the same build first, its folder wins and ours is discarded: both succeed."""
    final.parent.mkdir(parents=True, exist_ok=True)
    temporary = final.parent / f".{final.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        yield temporary
        (temporary / _COMPLETE).write_text(json.dumps({"folder": final.name}))
        try:
            os.rename(temporary, final)
        except OSError:
            if not is_complete(final):
                raise
    finally:
        if temporary.exists():
            shutil.rmtree(temporary, ignore_errors=True)
