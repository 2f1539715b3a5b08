"""The three examples (MLP, ResNet-style CNN, transformer encoder block) at two batch sizes from ONE compile,
against ONNX Runtime (fp32, max abs error <= 1e-4 x max(1, |reference|)); and each script runs as a user would."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

pytestmark = pytest.mark.compiled

EXAMPLES = ["mlp", "cnn", "transformer"]


@pytest.mark.parametrize("name", EXAMPLES)
def test_example_matches_onnxruntime_at_two_batch_sizes(helpers, name):
    module = helpers.load_example(name)
    random_feeds = helpers.load_example("_compare").random_feeds
    compiled = helpers.check_against_ort(module.build_model(), [random_feeds(module.INPUTS, b) for b in (1, 4)])
    reference_scale = np.abs(compiled(**random_feeds(module.INPUTS, 2))[0]).max()
    assert reference_scale > 0.1, "outputs near zero would make the comparison meaningless"


@pytest.mark.parametrize("name", EXAMPLES)
def test_example_script_runs(helpers, name):
    result = subprocess.run([sys.executable, str(helpers.root / "examples" / f"{name}.py"), "--batch", "1", "3"],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]
    assert "RESULT: all outputs match ONNX Runtime" in result.stdout
    assert result.stdout.count(" ok") == 2 and "ratio" in result.stdout
