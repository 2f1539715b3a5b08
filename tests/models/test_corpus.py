"""A representative slice of the model corpus (``sdflow corpus``; the full run writes docs/models.md): an old-opset
ONNX light graph, a torchvision CNN, ConvNeXt (its Transpose maps once wrote into their own input's buffer), a
transformer, its dynamically quantized variant, a two-layer bidirectional LSTM, a TorchScript loop over time
steps (a Loop whose body reads the iteration number) and a detector with its post-processing (FCOS: NonZero, TopK
over run-time counts, NMS inside an If, run as a PartitionedModel) match ONNX Runtime. Each model runs in its own
process, as in the full run."""
from __future__ import annotations

import pytest

pytestmark = [pytest.mark.compiled, pytest.mark.models]
pytest.importorskip("torch", reason="the corpus needs the 'models' extra (pip install -e .[models])")

from sdflow import corpus  # noqa: E402

SLICE = ["light/squeezenet", "torchvision/squeezenet@11", "torchvision/convnext@17", "transformers/bert@17", "quantized/bert@17",
         "recurrent/lstm_bidirectional@13", "control/recurrence-scripted@13", "torchvision/fcos_mobilenet_fpn@17"]


def test_corpus_has_100_models_from_every_source():
    sources = {name.split("/")[0] for name in corpus.ENTRIES}
    assert len(corpus.ENTRIES) >= 100 and sources == {"light", "torchvision", "transformers", "recurrent",
                                                      "quantized", "trained", "control"}


def test_representative_slice(tmp_path, monkeypatch):
    monkeypatch.setenv("SDFLOW_MODELS_DIR", str(tmp_path))
    results = {r.name: r for r in corpus.run_corpus(SLICE, timeout=600)}
    for name in SLICE:
        assert results[name].status == "pass", (name, results[name].detail)
        assert results[name].magnitude > 1e-3 and results[name].sdflow_ms > 0, results[name]
    table = corpus.format_markdown(list(results.values()) + [corpus.CorpusResult("x", "unsupported", "why")], "test")
    assert "| light/squeezenet |" in table and "## Failures" in table and "- **x** (unsupported): why" in table
