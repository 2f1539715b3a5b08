"""GPTQ's perplexity table on a small causal LM of our own: a GPT-2-architecture model (byte-level, 4 layers,
hidden 256, ~3.3M parameters) trained by this script for a few CPU minutes on offline text - Python's own
``pydoc_data.topics``, the topics sorted by name, the last tenth held out - exported to ONNX, then
compiled by sdflow in float32 and with 4- and 3-bit weights by round-to-nearest and by GPTQ (groups of 128,
calibrated on sequences of the training split), and the perplexity of each on the held-out split. Exported by
PyTorch's dynamo exporter (as the zoo's models are). The paper
(arXiv 2210.17323, OPT-125M on WikiText2): 27.65 fp32 / 37.28 RTN-4 / 31.12 GPTQ-4 / ~1.3e3 RTN-3 / 53.85 GPTQ-3.
Writes docs/quantization-gpt2.md.

    python benchmarks/gpt2_perplexity.py [--minutes 6] [--windows 256] [--calibration 32] [-o FILE] [--quick]

``--quick`` (the test suite's run) trains a 1-layer model for a few seconds and evaluates a few windows.
"""
from __future__ import annotations

import argparse
import datetime
import math
import pathlib
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
SEQUENCE = 128
VARIANTS = [  # (label, sdflow pipeline, needs calibration)
    ("float32", "O2", False),
    ("RTN 4-bit, g128", "O2,quantize-weights{bits=4,group_size=128}", False),
    ("GPTQ 4-bit, g128", "O2,quantize-weights{bits=4,group_size=128,method=gptq}", True),
    ("RTN 3-bit, g128", "O2,quantize-weights{bits=3,group_size=128}", False),
    ("GPTQ 3-bit, g128", "O2,quantize-weights{bits=3,group_size=128,method=gptq}", True),
    # The paper's Table 3 setting: one scale and zero point per output row (no groups).
    ("RTN 4-bit, per row", "O2,quantize-weights{bits=4,group_size=-1}", False),
    ("GPTQ 4-bit, per row", "O2,quantize-weights{bits=4,group_size=-1,method=gptq}", True),
    ("RTN 3-bit, per row", "O2,quantize-weights{bits=3,group_size=-1}", False),
    ("GPTQ 3-bit, per row", "O2,quantize-weights{bits=3,group_size=-1,method=gptq}", True),
]


def corpus() -> tuple[np.ndarray, np.ndarray]:
    """(training bytes, held-out bytes) of pydoc_data.topics: the topics in name order, the last tenth held out."""
    from pydoc_data.topics import topics
    names = sorted(topics)
    cut = len(names) * 9 // 10
    encode = lambda keys: np.frombuffer("\n".join(topics[k] for k in keys).encode("utf-8"), np.uint8)  # noqa: E731
    return encode(names[:cut]), encode(names[cut:])


def train(data: np.ndarray, layers: int, hidden: int, seconds: float, seed: int = 0):
    """A GPT-2 (byte vocabulary) trained with AdamW on random windows of ``data`` for ``seconds``."""
    import torch
    from sdflow.zoo import _torchvision
    _torchvision()  # (transformers imports torchvision; the zoo makes PyPI's torchvision importable beside CPU torch)
    from transformers import GPT2Config, GPT2LMHeadModel
    torch.manual_seed(seed)
    torch.set_num_threads(2)
    config = GPT2Config(vocab_size=256, n_positions=SEQUENCE, n_embd=hidden, n_layer=layers, n_head=4,
                        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, use_cache=False,
                        attn_implementation="eager", bos_token_id=10, eos_token_id=10)  # (newline bytes)
    model = GPT2LMHeadModel(config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=0.01)
    rng = np.random.default_rng(seed)
    tokens = torch.from_numpy(data.astype(np.int64))
    start, steps, loss = time.perf_counter(), 0, float("nan")
    while (elapsed := time.perf_counter() - start) < seconds:
        # Warm-up over the first 5% of the time, then a cosine decay to a tenth of the rate.
        fraction = elapsed / seconds
        rate = 2e-3 * (fraction / 0.05 if fraction < 0.05 else 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * fraction)))
        for group in optimizer.param_groups:
            group["lr"] = rate
        offsets = rng.integers(0, len(data) - SEQUENCE - 1, 16)
        batch = torch.stack([tokens[o:o + SEQUENCE] for o in offsets])
        out = model(input_ids=batch, labels=batch)
        optimizer.zero_grad()
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        steps, loss = steps + 1, out.loss.item()
    model.eval()
    return model, steps, loss, sum(p.numel() for p in model.parameters())


def export(model, path: pathlib.Path) -> None:
    import torch

    class Logits(torch.nn.Module):
        def __init__(self, lm):
            super().__init__()
            self.lm = lm

        def forward(self, input_ids):
            return self.lm(input_ids=input_ids).logits

    example = torch.zeros((1, SEQUENCE), dtype=torch.int64)
    program = torch.onnx.export(Logits(model), (example,), input_names=["input_ids"], output_names=["logits"],
                                dynamo=True, optimize=True, verbose=False)
    program.save(str(path))


def windows(data: np.ndarray, count: int) -> list[np.ndarray]:
    """``count`` non-overlapping windows of SEQUENCE + 1 bytes, evenly spread over ``data``."""
    starts = np.linspace(0, len(data) - SEQUENCE - 1, count).astype(np.int64)
    return [data[s:s + SEQUENCE + 1].astype(np.int64) for s in starts]


def perplexity(run, evaluation: list[np.ndarray]) -> float:
    """exp of the mean cross-entropy of each next byte given the bytes before it (every position of a window)."""
    total, count = 0.0, 0
    for window in evaluation:
        logits = np.asarray(run(window[None, :SEQUENCE]), np.float64)[0]
        logits -= logits.max(axis=-1, keepdims=True)
        log_probs = logits - np.log(np.exp(logits).sum(axis=-1, keepdims=True))
        total -= float(log_probs[np.arange(SEQUENCE), window[1:]].sum())
        count += SEQUENCE
    return math.exp(total / count)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=6.0, help="training time")
    parser.add_argument("--windows", type=int, default=256, help="held-out windows of 128 bytes evaluated")
    parser.add_argument("--calibration", type=int, default=32, help="training windows GPTQ calibrates on")
    parser.add_argument("-o", "--output", default=str(ROOT / "docs" / "quantization-gpt2.md"))
    parser.add_argument("--quick", action="store_true", help="1 layer, a few seconds, a few windows (tests)")
    args = parser.parse_args()
    import sdflow

    training, held_out = corpus()
    layers, hidden, seconds = (1, 128, 5.0) if args.quick else (4, 256, args.minutes * 60)
    model, steps, loss, parameters = train(training, layers, hidden, seconds)
    print(f"trained {parameters / 1e6:.2f}M parameters for {steps} steps, last training loss {loss:.3f}", flush=True)
    rng = np.random.default_rng(1)
    calibration = [{"input_ids": training[o:o + SEQUENCE].astype(np.int64)[None]}
                   for o in rng.integers(0, len(training) - SEQUENCE, args.calibration)]
    evaluation = windows(held_out, args.windows)
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        path = pathlib.Path(folder) / "gpt2_small.onnx"
        export(model, path)
        for label, passes, calibrated in VARIANTS:
            compiled = sdflow.compile(path, passes=passes, calibration=calibration if calibrated else None)
            value = perplexity(lambda ids: compiled(input_ids=ids)[0], evaluation)
            rows.append((label, value))
            print(f"{label:20s} perplexity {value:.3f}", flush=True)
        import onnxruntime as ort
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        reference = perplexity(lambda ids: session.run(None, {"input_ids": ids})[0], evaluation)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                            text=True).stdout.strip()
    base = rows[0][1]
    lines = [
        "# Quantization of a small causal LM: GPTQ's perplexity table",
        "",
        f"Produced by `python benchmarks/gpt2_perplexity.py` ({datetime.date.today()}, commit {commit}"
        + (", --quick" if args.quick else "") + f"): a GPT-2-architecture model with a byte vocabulary, {layers} "
        f"layers, hidden {hidden}, {parameters / 1e6:.2f}M parameters, trained by the script for "
        f"{seconds / 60:.1f} CPU minutes ({steps} AdamW steps of 16 windows of {SEQUENCE} bytes, a cosine schedule; "
        "last training loss "
        f"{loss:.3f}) on Python's `pydoc_data.topics` with the last tenth of the topics held out; exported with "
        "PyTorch's dynamo exporter and compiled by sdflow; perplexity per byte on "
        f"{len(evaluation)} held-out windows of {SEQUENCE} bytes (every position predicted from the ones before it). "
        f"GPTQ calibrates on {args.calibration} windows of the training text. The tied embedding and output matrix "
        "stays float32 (quantize-weights leaves a weight that other ops read). ONNX Runtime on the float32 file: "
        f"{reference:.3f}.",
        "",
        "| weights | perplexity | ratio to float32 |",
        "|---|---:|---:|",
    ]
    lines += [f"| {label} | {value:.3f} | {value / base:.3f} |" for label, value in rows]
    value = dict(rows)
    verdict = {True: "yes", False: "no"}
    lines += ["", "The paper (arXiv 2210.17323, Table 3: OPT-125M, WikiText2): float32 27.65, RTN 4-bit 37.28, GPTQ "
              "4-bit 31.12, RTN 3-bit ~1.3e3, GPTQ 3-bit 53.85 (ratios 1.35 / 1.13 / ~47 / 1.95).", "",
              *[f"- {setting}: GPTQ below RTN at 4 bits: "
                f"{verdict[value[f'GPTQ 4-bit, {setting}'] < value[f'RTN 4-bit, {setting}']]}; at 3 bits: "
                f"{verdict[value[f'GPTQ 3-bit, {setting}'] < value[f'RTN 3-bit, {setting}']]}; GPTQ 3-bit within 2x "
                f"of float32: {verdict[value[f'GPTQ 3-bit, {setting}'] < 2 * base]}; RTN 3-bit's loss over float32 "
                f"{(value[f'RTN 3-bit, {setting}'] - base) / max(value[f'GPTQ 3-bit, {setting}'] - base, 1e-9):.1f}"
                "x GPTQ 3-bit's." for setting in ("g128", "per row")],
              "- The gaps are far smaller than the paper's: a model of 3M parameters over bytes, trained for minutes, "
              "loses little to rounding even with one scale per 256-wide row; OPT-125M's outlier features (a few "
              "input channels far larger than the rest, which set a row's scale and flatten everything else to a "
              "few codes) are what make round-to-nearest collapse at 3 bits there, and a model this small and this "
              "briefly trained does not grow them.", ""]
    pathlib.Path(args.output).write_text("\n".join(lines))
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
