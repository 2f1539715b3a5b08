"""The optimised-graph cache: ``sdflow.compile`` of a model it has seen before skips loading, checking and
importing the ONNX file and running the passes (for BERT-base ~5 s of a ~7 s cached compile).

An entry is the graph after the pipeline (``graph.sdfg`` with its weights in ``graph.sdfg.weights.npz``), the
pass records, and per target the record of the native build made from it (``builds.json``: its folder, weights
and code generators' digest), under ``<build cache>/graphs/<key>``; with a usable build record a cached compile
does not lower the graph again either (GPT-2: 2.7 s of copying the graph and 0.8 s of lowering). The key covers
the model's bytes, the pipeline with its options, and the sources of the IR, the frontends and the passes
(editing any of them makes new entries), so an entry is only ever reused for the graph the same code would make
again. The native build behind it stays in the
build cache (keyed by the generated program). A model whose weights live in external data files is not cached
(its file does not hold its content; any model whose bytes contain "location", the key that names an
external file, is treated so). Entries are written to a temporary folder and renamed into place, so a
reader never sees half of one; ``SDFLOW_GRAPH_CACHE=0`` turns the cache off.
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
import pathlib
import shutil
import tempfile

import dace
import onnx

from sdflow.codegen.build import BuildRecord
from sdflow.codegen.cache import cache_root
from sdflow.ir import Graph
from sdflow.passes import PassRecord, PassResult

__all__ = ["graph_key", "load_graph", "store_graph", "load_builds", "store_build", "ENV"]

ENV = "SDFLOW_GRAPH_CACHE"
_GRAPH = "graph.sdfg"
_RECORDS = "passes.json"
_BUILDS = "builds.json"


@functools.cache
def _sources_digest() -> str:
    """The code that turns a model into an optimised graph: ir, frontends and passes (and this driver file)."""
    import sdflow.frontends
    import sdflow.ir
    import sdflow.passes
    digest = hashlib.sha256()
    for package in (sdflow.ir, sdflow.frontends, sdflow.passes):
        for path in sorted(pathlib.Path(package.__file__).parent.rglob("*.py")):
            digest.update(path.read_bytes())
    digest.update(pathlib.Path(__file__).read_bytes())
    return digest.hexdigest()


def _model_bytes(model) -> bytes | None:
    if isinstance(model, (str, os.PathLike)) and not str(model).endswith((".sdfg", ".sdfgz")):
        try:
            return pathlib.Path(model).read_bytes()
        except OSError:
            return None  # the loader reports it
    if isinstance(model, bytes):
        return model
    if isinstance(model, onnx.ModelProto):
        return model.SerializeToString()
    return None


def graph_key(model, pipeline, calibration: str = "") -> str | None:
    """The cache key of ``model`` optimised by ``pipeline`` (parsed passes) with the calibration feeds of digest
    ``calibration`` (empty: none), or None when it is not cacheable."""
    if os.environ.get(ENV, "1") == "0":
        return None
    data = _model_bytes(model)
    # External data is named by a "location" entry; a model that merely contains the word loses the cache only.
    if data is None or b"location" in data:
        return None
    parts = {
        "model": hashlib.sha256(data).hexdigest(),
        "pipeline": repr(list(pipeline)),
        "sources": _sources_digest(),
        "dace": dace.__version__,
        "onnx": onnx.__version__,
    }
    if calibration:
        parts["calibration"] = calibration
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:24]


def _folder(key: str) -> pathlib.Path:
    return cache_root() / "graphs" / key


def load_graph(key: str) -> tuple[Graph, list[PassRecord]] | None:
    """The cached graph and pass records of ``key``, or None when there is no complete entry."""
    folder = _folder(key)
    if not (folder / _RECORDS).is_file():
        return None
    try:
        records = [PassRecord(r["name"], PassResult(r["modified"], r["stats"], r["notes"]), r["seconds"])
                   for r in json.loads((folder / _RECORDS).read_text())]
        return Graph.load(folder / _GRAPH), records
    except Exception:  # noqa: BLE001  (a damaged entry is rebuilt, never trusted)
        shutil.rmtree(folder, ignore_errors=True)
        return None


def store_graph(key: str, graph: Graph, records: list[PassRecord]) -> None:
    """Writes the entry of ``key`` (a concurrent writer of the same key may win; both entries are equal)."""
    folder = _folder(key)
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = pathlib.Path(tempfile.mkdtemp(prefix=f".{key}-", dir=folder.parent))
    try:
        graph.save(staging / _GRAPH)
        (staging / _RECORDS).write_text(json.dumps(
            [{"name": r.name, "modified": r.result.modified, "stats": r.result.stats, "notes": r.result.notes,
              "seconds": r.seconds} for r in records]))
        os.rename(staging, folder)
    except OSError:
        pass  # another process stored it first, or the cache is not writable: the compile itself succeeded
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def load_builds(key: str) -> dict[str, BuildRecord]:
    """The build records of entry ``key`` by ``target/instrument`` (empty when there are none or they are
    damaged)."""
    try:
        return {name: BuildRecord(r["folder"], tuple(r["weights"]), r["codegen"])
                for name, r in json.loads((_folder(key) / _BUILDS).read_text()).items()}
    except (OSError, ValueError, KeyError, TypeError):
        return {}


def store_build(key: str, name: str, record: BuildRecord) -> None:
    """Adds the build record ``name`` (``target/instrument``) to entry ``key`` (replaced atomically)."""
    folder = _folder(key)
    if not folder.is_dir():
        return
    builds = {n: dataclasses.asdict(r) for n, r in load_builds(key).items()}
    builds[name] = dataclasses.asdict(record)
    try:
        with tempfile.NamedTemporaryFile("w", dir=folder, delete=False, suffix=".tmp") as file:
            json.dump(builds, file)
        os.replace(file.name, folder / _BUILDS)
    except OSError:
        pass  # the compile itself succeeded; the next one lowers again
