"""Pipeline specs, levels, typed options, dumps after every pass, verification between passes."""
from __future__ import annotations

import dataclasses

import pytest

from sdflow.frontends.onnx import import_model
from sdflow.ir import Graph, PipelineError, verify
from sdflow.passes import (LEVELS, Pass, PassResult, available_passes, parse_pipeline, register_pass,
                           run_pipeline)


def test_levels_expand():
    assert [p.name for p in parse_pipeline("O0")] == []
    assert [p.name for p in parse_pipeline("O1")] == LEVELS["O1"]
    assert [p.name for p in parse_pipeline(" O1 , eliminate-dead-nodes ")] == LEVELS["O1"] + ["eliminate-dead-nodes"]


def test_options_are_typed():
    (fold, ) = parse_pipeline("fold-constants{max_elements=10}")
    assert fold.max_elements == 10 and isinstance(fold.max_elements, int)


@pytest.mark.parametrize("spec, message", [
    ("no-such-pass", "unknown pass 'no-such-pass'"),
    ("fold-constants{bogus=1}", "has no option 'bogus'"),
    ("fold-constants{max_elements=many}", "is not a valid"),
    ("fold-constants{max_elements}", "must be key=value"),
    ("O1{x=1}", "takes no options"),
    ("fold-constants;eliminate-dead-nodes", "expected ','"),
    ("fold-constants{", "in pass pipeline 'fold-constants{'"),
])
def test_bad_specs(spec, message):
    with pytest.raises(PipelineError, match=message):
        parse_pipeline(spec)


def test_every_pass_has_a_one_line_doc():
    for name, cls in available_passes().items():
        assert cls.summary() and "\n" not in cls.summary(), name


def test_dump_dir_writes_the_graph_after_every_pass(helpers, tmp_path):
    graph = import_model(helpers.load_example("transformer").build_model())
    records = run_pipeline(graph, "O1", dump_dir=tmp_path)
    names = sorted(p.name for p in tmp_path.glob("*.sdfg"))
    assert names == ["00-input.sdfg", "01-fold-constants.sdfg", "02-fold-shape-inputs.sdfg",
                     "03-eliminate-dead-nodes.sdfg"]
    for path in tmp_path.glob("*.sdfg"):
        verify(Graph.load(path))
    assert [r.dump.name for r in records] == names[1:]
    assert all(r.seconds >= 0 for r in records)


@dataclasses.dataclass(frozen=True)
class _Corrupt(Pass):
    """Breaks the graph on purpose (test only)."""

    name = "test-corrupt"

    def apply(self, graph, ctx):
        name = graph.inputs[0]
        graph.sdfg.arrays["a"].shape = (3, 3)
        return PassResult(True, {"broken": name})


def test_verification_after_each_pass_names_the_failing_pass(helpers):
    if "test-corrupt" not in available_passes():
        register_pass(_Corrupt)
    graph = import_model(helpers.load_example("mlp").build_model())
    with pytest.raises(PipelineError, match=r"pass 'test-corrupt' failed \(passes before it: fold-constants\)"):
        run_pipeline(graph, "fold-constants,test-corrupt")
