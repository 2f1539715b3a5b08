"""Real architectures exported by PyTorch (torchvision ResNet-18 / MobileNetV2, HuggingFace BERT / GPT-2, MiniLM
with its trained weights) compile with O1 and with O2 (all fusion passes) and match ONNX Runtime at two input shapes from one compile.

CI runs the reduced-depth variants; the full models run with ``SDFLOW_FULL_MODELS=1 pytest tests/models``."""
from __future__ import annotations

import os

import numpy as np
import pytest

pytestmark = [pytest.mark.compiled, pytest.mark.models]
torch = pytest.importorskip("torch", reason="the real-model tests need the 'models' extra (pip install -e .[models])")

from sdflow import zoo  # noqa: E402

FULL = os.environ.get("SDFLOW_FULL_MODELS") == "1"
SHAPES = [{"batch": 1, "seq": 128}, {"batch": 2, "seq": 37}]


def _feeds(compiled, dims, rng):
    feeds = {}
    for name, ttype in compiled.input_types.items():
        shape = [d if isinstance(d, int) else dims[str(d)] for d in ttype.shape]
        if name == "attention_mask":
            mask = np.ones(shape, np.int64)
            mask[:, shape[1] * 3 // 4:] = 0  # padded tail
            feeds[name] = mask
        elif np.issubdtype(ttype.dtype, np.integer):
            feeds[name] = rng.integers(0, 1000, shape).astype(ttype.dtype)
        else:
            feeds[name] = rng.standard_normal(shape).astype(ttype.dtype)
    return feeds


@pytest.mark.parametrize("pipeline", ["O1", "O2"])
@pytest.mark.parametrize("name", zoo.MODELS)
def test_zoo_model_matches_onnxruntime(name, pipeline, helpers, rng):
    import sdflow
    from sdflow.codegen.build import native_builds
    from sdflow.ort import compare_outputs, run_onnxruntime

    path = zoo.export(name, reduced=not FULL)
    compiled = sdflow.compile(path, passes=pipeline)
    builds = native_builds()
    for dims in SHAPES:
        feeds = _feeds(compiled, dims, rng)
        outputs = compiled(**feeds).as_dict()
        reference = run_onnxruntime(path, feeds)
        for comparison in compare_outputs(outputs, reference):
            assert comparison.ok, f"{name} {dims}: {comparison}"
            assert comparison.reference_magnitude > 0.05, f"{name}: near-zero reference, comparison is vacuous"
        if name == "minilm":
            for got, expected in zip(outputs.values(), reference.values()):
                cosine = np.sum(got * expected, -1) / (np.linalg.norm(got, axis=-1) * np.linalg.norm(expected,
                                                                                                    axis=-1))
                assert cosine.min() >= 0.99999, cosine
    assert native_builds() == builds, "a second shape triggered a rebuild"


def test_real_model_ops_lists_what_the_exports_contain():
    import onnx
    used = set()
    for name in zoo.MODELS:
        model = onnx.load(zoo.export(name, reduced=not FULL), load_external_data=False)
        used |= {node.op_type for node in model.graph.node}
    assert used == set(zoo.REAL_MODEL_OPS)
