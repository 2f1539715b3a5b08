"""What DaCe's VS Code extension needs from sdflow: dumped graphs load, validate and expand in a process that
imports only DaCe (the extension's daemon), sdflow's passes are found and applied the way the daemon finds
custom transformations, and the workspace files point the extension at them."""
from __future__ import annotations

import json
import pathlib
import subprocess
import sys
import textwrap

import pytest

import sdflow

# Run in a fresh interpreter that imports DaCe only; sdflow's classes must come in through the classpaths.
LOAD_AND_EXPAND = textwrap.dedent("""
    import json, sys
    import dace
    assert "sdflow" not in sys.modules
    results = {}
    for path in sys.argv[1:]:
        sdfg = dace.SDFG.from_file(path)
        sdfg.validate()
        library = [n for n in sdfg.start_state.nodes() if isinstance(n, dace.nodes.LibraryNode)]
        classpaths = sorted({type(n).__module__ + "." + type(n).__qualname__ for n in library})
        sdfg.expand_library_nodes()
        sdfg.validate()
        left = [n for n, _ in sdfg.all_nodes_recursive() if isinstance(n, dace.nodes.LibraryNode)
                and type(n).__module__.startswith("sdflow")]
        results[path] = {"ops": len(library), "classpaths": classpaths, "left": len(left)}
    print(json.dumps(results))
""")

# What the extension's daemon does (dace-vscode backend): exec each configured file by path as its own module,
# list matches with SDFGOptimizer, round-trip the chosen one through JSON, apply it to the graph it names.
DAEMON = textwrap.dedent("""
    import importlib.util, json, sys
    import dace
    from dace import serialize
    from dace.transformation.optimizer import SDFGOptimizer
    path, sdfg_file, only = sys.argv[1:]  # only: the transformations to apply (comma-separated), in turn
    spec = importlib.util.spec_from_file_location(path, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[path] = module
    spec.loader.exec_module(module)
    sdfg = dace.SDFG.from_json(json.load(open(sdfg_file)))
    steps = []
    while True:
        listed = [m for m in SDFGOptimizer(sdfg).get_pattern_matches() if type(m).__name__.startswith("Sdflow")]
        matches = [m for m in listed if type(m).__name__ in only.split(",")]
        if not matches:
            break
        transformation = serialize.from_json(json.loads(json.dumps(matches[0].to_json())))
        target = sdfg.cfg_list[transformation.cfg_id]
        transformation._sdfg = target
        transformation.apply_pattern(target)
        sdfg = dace.SDFG.from_json(sdfg.to_json())  # the editor stores the result as JSON and sends it back
        sdfg.validate()
        ops = [n for n in sdfg.start_state.nodes() if isinstance(n, dace.nodes.LibraryNode)]
        steps.append({"name": type(matches[0]).__name__, "doc": matches[0].__doc__, "ops": len(ops),
                      "listed": sorted(type(m).__name__ for m in listed)})
    print(json.dumps(steps))
""")


@pytest.fixture
def dumps(helpers, tmp_path):
    model = helpers.load_example("transformer").build_model()
    graph = sdflow.optimize(sdflow.load(model), "O1", dump_dir=tmp_path / "passes")
    return tmp_path / "passes", graph


def _python(code: str, *args, cwd) -> object:
    result = subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True,
                            cwd=cwd, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_every_dump_loads_validates_and_expands_in_a_plain_dace_process(dumps, tmp_path):
    folder, graph = dumps
    files = sorted(folder.glob("*.sdfg"))
    assert [f.name for f in files] == ["00-input.sdfg", "01-fold-constants.sdfg", "02-fold-shape-inputs.sdfg",
                                       "03-eliminate-dead-nodes.sdfg"]
    results = _python(LOAD_AND_EXPAND, *files, cwd=tmp_path)
    for file in files:
        result = results[str(file)]
        assert result["ops"] > 0 and result["left"] == 0, (file.name, result)
        assert all(c.startswith("sdflow.ir.nodes.Onnx") for c in result["classpaths"]), result["classpaths"]
    assert results[str(files[-1])]["ops"] == len(graph.op_nodes())


def test_sdflow_class_names_do_not_collide_with_dace_classes():
    import importlib
    import pkgutil

    import dace.libraries
    from dace.sdfg.nodes import Node
    from dace.transformation.transformation import PatternTransformation

    import sdflow.codegen.lowering  # noqa: F401  (registers the expansion transformations)
    import sdflow.transformations  # noqa: F401
    for module in pkgutil.iter_modules(dace.libraries.__path__):
        try:
            importlib.import_module(f"dace.libraries.{module.name}")
        except Exception:  # noqa: BLE001  (some need optional packages; their classes cannot collide then)
            pass

    def subclasses(cls):
        for sub in cls.__subclasses__():
            yield sub
            yield from subclasses(sub)

    classes = set(subclasses(Node)) | set(subclasses(PatternTransformation))
    ours = {c.__name__ for c in classes if c.__module__.startswith("sdflow")}
    theirs = {c.__name__ for c in classes if c.__module__.startswith("dace")}
    assert len(ours) > 60 and len(theirs) > 60
    assert not ours & theirs


def test_the_extension_lists_and_applies_sdflow_passes_like_the_pipeline(dumps, tmp_path, helpers):
    folder, graph = dumps
    entry = helpers.root / "sdflow" / "vscode_transformations.py"
    cleanups = "SdflowFoldConstants,SdflowFoldShapeInputs,SdflowEliminateDeadNodes"
    steps = _python(DAEMON, entry, folder / "00-input.sdfg", cleanups, cwd=tmp_path)
    # fold-constants has nothing to fold in this model, so it is not offered; the other two are, in turn, beside
    # the fusion passes that would change the graph (fold-layout finds nothing to fold before fuse-attention) and
    # the quantization passes (quantize-weights' round-to-nearest and quantize-dynamic-int8 need no calibration).
    assert [s["name"] for s in steps] == ["SdflowFoldShapeInputs", "SdflowEliminateDeadNodes"]
    assert steps[0]["listed"] == ["SdflowFoldShapeInputs", "SdflowFuseAttention", "SdflowFuseElementwise",
                                  "SdflowFuseGemmEpilogue", "SdflowFuseNormalization", "SdflowQuantizeDynamicInt8",
                                  "SdflowQuantizeWeights"]
    assert "fold-shape-inputs" in steps[0]["doc"]
    pipeline_ops = {f.stem: len(sdflow.load(f).op_nodes()) for f in folder.glob("*.sdfg")}
    assert steps[0]["ops"] == pipeline_ops["02-fold-shape-inputs"]
    assert steps[1]["ops"] == pipeline_ops["03-eliminate-dead-nodes"] == len(graph.op_nodes())


def test_a_pass_option_is_a_dace_property():
    from sdflow.transformations import SdflowFoldConstants
    assert SdflowFoldConstants().max_elements == 1 << 24
    transformation = SdflowFoldConstants()
    transformation.max_elements = 10
    assert transformation.make_pass().max_elements == 10
    assert "max_elements" in SdflowFoldConstants.__properties__


def test_workspace_recommends_the_extension_and_settings_point_at_the_passes(helpers, tmp_path):
    recommended = json.loads((helpers.root / ".vscode" / "extensions.json").read_text())["recommendations"]
    assert "phschaad.sdfv" in recommended
    settings = tmp_path / "settings.json"
    settings.write_text(json.dumps({"editor.tabSize": 2}))
    script = helpers.root / "scripts" / "vscode_settings.py"
    subprocess.run([sys.executable, str(script), str(settings)], check=True, capture_output=True)
    written = json.loads(settings.read_text())
    assert written["editor.tabSize"] == 2
    (paths, ) = [written["dace.optimization.customTransformationsPaths"]]
    assert [pathlib.Path(p) for p in paths] == [helpers.root / "sdflow" / "vscode_transformations.py"]
    assert written["python.defaultInterpreterPath"].endswith("/.venv/bin/python")
    # A settings file with comments (JSONC) is left as it is.
    settings.write_text('{\n  // mine\n  "editor.tabSize": 2\n}\n')
    result = subprocess.run([sys.executable, str(script), str(settings)], capture_output=True, text=True)
    assert result.returncode == 0 and "left as is" in result.stderr
    assert "// mine" in settings.read_text()
