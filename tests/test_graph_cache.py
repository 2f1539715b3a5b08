"""The optimised-graph cache of sdflow.compile: a second compile of the same model and pipeline skips import and
passes and gives the same numbers; another model, another pipeline or a damaged entry is not served from it."""
from __future__ import annotations

import dataclasses
import importlib

import numpy as np
import pytest

import sdflow
from sdflow import graph_cache
from sdflow.passes import parse_pipeline

pytestmark = pytest.mark.compiled


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SDFLOW_CACHE_DIR", str(tmp_path))
    return tmp_path / "graphs"


@pytest.fixture
def model_file(helpers, tmp_path):
    model = helpers.load_example("mlp").build_model()
    path = tmp_path / "mlp.onnx"
    path.write_bytes(model.SerializeToString())
    return path


def test_second_compile_uses_the_cached_graph(cache, model_file):
    x = np.random.default_rng(0).standard_normal((3, 64)).astype(np.float32)
    first = sdflow.compile(model_file)
    second = sdflow.compile(model_file)
    assert not first.graph_from_cache and second.graph_from_cache
    assert [r.name for r in second.pass_records] == [r.name for r in first.pass_records]
    assert [r.result.stats for r in second.pass_records] == [r.result.stats for r in first.pass_records]
    assert second.build_folder == first.build_folder and not second.built
    np.testing.assert_array_equal(second(x)[0], first(x)[0])
    assert len(list(cache.iterdir())) == 1
    assert second.build_record == first.build_record  # loaded by its record, without lowering the graph again


def test_a_build_record_from_other_code_generators_is_not_used(cache, model_file, monkeypatch):
    build_module = importlib.import_module("sdflow.codegen.build")  # the package exports build() by that name
    first = sdflow.compile(model_file)
    lowered = []
    real_lower = build_module.lower
    monkeypatch.setattr(build_module, "lower", lambda graph: lowered.append(graph) or real_lower(graph))
    assert sdflow.compile(model_file).graph_from_cache and not lowered  # the record is usable: no lowering
    key = graph_cache.graph_key(model_file, parse_pipeline(sdflow.DEFAULT_PASSES))
    record = graph_cache.load_builds(key)["cpu/plain"]
    graph_cache.store_build(key, "cpu/plain", dataclasses.replace(record, codegen="older code"))
    again = sdflow.compile(model_file)
    assert lowered and again.build_folder == first.build_folder and not again.built
    assert graph_cache.load_builds(key)["cpu/plain"] == record  # the current record replaces the stale one


def test_other_pipeline_or_model_is_not_served(cache, model_file, helpers):
    sdflow.compile(model_file)
    assert not sdflow.compile(model_file, passes="O1").graph_from_cache
    changed = helpers.load_example("mlp").build_model()
    changed.graph.initializer[0].raw_data = bytes(len(changed.graph.initializer[0].raw_data))  # zero weights
    assert not sdflow.compile(changed).graph_from_cache
    assert len(list(cache.iterdir())) == 3


def test_a_damaged_entry_is_rebuilt(cache, model_file):
    sdflow.compile(model_file)
    key = graph_cache.graph_key(model_file, parse_pipeline(sdflow.DEFAULT_PASSES))
    (cache / key / "graph.sdfg").write_text("{ truncated")
    again = sdflow.compile(model_file)
    assert not again.graph_from_cache
    assert sdflow.compile(model_file).graph_from_cache


def test_models_with_external_data_and_disabled_cache_are_not_cached(model_file, monkeypatch, cache):
    assert graph_cache.graph_key(b"...location...", []) is None
    monkeypatch.setenv(graph_cache.ENV, "0")
    assert graph_cache.graph_key(model_file, []) is None
    sdflow.compile(model_file)
    assert not cache.exists()
