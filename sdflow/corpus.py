"""The model corpus: architectures nobody tuned sdflow for, built offline by the project's own code, each compiled
by sdflow and compared with ONNX Runtime.

    sdflow corpus [-k PATTERN] [--list] [--markdown docs/models.md] [--json FILE] [--timeout S]

Entries (``source/name``):
- ``light/*``: ONNX's own light model-zoo graphs (opset 8-9 CNNs) with random weights materialised for their
  ConstantOfShape weights (every output would otherwise be one constant), the logits an output beside the
  probabilities;
- ``torchvision/*``: torchvision architectures (reduced widths or depths where the full one is hundreds of MB) at a
  small image size, batch-norm statistics re-estimated on random images, exported by the legacy exporter at opsets
  11, 13 and 17 and by the dynamo exporter at 18;
- ``transformers/*``: Hugging Face architectures from small configs (random weights): encoders by the legacy
  exporter at opset 17, decoders by the dynamo exporter (the legacy one cannot export their mask code);
- ``recurrent/*``: LSTM / GRU / RNN modules;
- ``quantized/*``: models above quantized by ONNX Runtime's ``quantize_dynamic`` (uint8 weights).

Files are cached under ``<models dir>/corpus``. Each model runs in its own process (a crash or a hang is that
model's failure, not the run's). Needs the ``models`` extra; nothing is downloaded.
"""
from __future__ import annotations

import argparse
import dataclasses
import fnmatch
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import time

import numpy as np

__all__ = ["ENTRIES", "CorpusResult", "build", "run_entry", "run_corpus", "format_markdown"]

IMAGE = 64  # pixels: the architectures, not the image size, are what the corpus tests


@dataclasses.dataclass
class CorpusResult:
    name: str
    status: str  # pass | wrong result | compile error | runtime error | unsupported | export failed | crashed
    detail: str = ""
    opset: int = 0
    ops: int = 0
    compile_s: float = 0.0
    max_error: float = 0.0
    magnitude: float = 0.0
    sdflow_ms: float = 0.0
    onnxruntime_ms: float = 0.0


def _torch():
    from sdflow.zoo import _torchvision
    import torch
    return torch, _torchvision()


def _calibrated(model, shape):
    """Batch-norm statistics re-estimated on random inputs (random-init networks otherwise output ~0)."""
    torch, _ = _torch()
    model.train()
    for module in model.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.reset_running_stats()
            module.momentum = None
    with torch.no_grad():
        for _ in range(3):
            model(torch.randn(4, *shape[1:]))
    return model.eval()


def _vision(factory):
    def make():
        torch, torchvision = _torch()
        torch.manual_seed(0)
        return _calibrated(factory(torchvision), (2, 3, IMAGE, IMAGE)), (torch.randn(2, 3, IMAGE, IMAGE), ), \
            ["image"], {"image": {0: "batch"}}
    return make


def _text(config_factory, model_class: str, with_mask: bool = True, vocab: int = 100):
    def make():
        torch, _ = _torch()
        import transformers
        torch.manual_seed(0)
        encoder = getattr(transformers, model_class)(config_factory(transformers)).eval()

        class LastHiddenState(torch.nn.Module):
            """The inputs by keyword (forward's second parameter is not the mask everywhere), one output."""

            def __init__(self):
                super().__init__()
                self.encoder = encoder

            def forward(self, input_ids, attention_mask=None):
                return self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state

        ids = torch.randint(0, vocab, (2, 16))
        names = ["input_ids", "attention_mask"] if with_mask else ["input_ids"]
        args = (ids, torch.ones(2, 16, dtype=torch.int64)) if with_mask else (ids, )
        return LastHiddenState().eval(), args, names, {n: {0: "batch", 1: "seq"} for n in names}
    return make


def _recurrent(kind: str, bidirectional: bool, layers: int):
    def make():
        torch, _ = _torch()
        torch.manual_seed(0)
        cell = getattr(torch.nn, kind)(16, 24, num_layers=layers, bidirectional=bidirectional, batch_first=True)

        class Head(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.cell, self.out = cell, torch.nn.Linear(24 * (2 if bidirectional else 1), 8)

            def forward(self, x):
                return self.out(self.cell(x)[0])

        return Head().eval(), (torch.randn(2, 10, 16), ), ["x"], {"x": {0: "batch", 1: "steps"}}
    return make


def _small_classifier(model):
    """VGG's classifier expects 512 x 7 x 7 features (100M weights): the same three layers, narrower, over the
    8 x 8 maps a 64-pixel image leaves (the legacy exporter cannot pool 8 x 8 adaptively to 7 x 7)."""
    torch, _ = _torch()
    model.avgpool = torch.nn.AdaptiveAvgPool2d((IMAGE // 8, IMAGE // 8))
    model.classifier = torch.nn.Sequential(torch.nn.Linear(64 * (IMAGE // 8) ** 2, 64), torch.nn.ReLU(True), torch.nn.Dropout(),
                                           torch.nn.Linear(64, 64), torch.nn.ReLU(True), torch.nn.Dropout(),
                                           torch.nn.Linear(64, 10))
    return model


_SMALL = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, vocab_size=100,
              max_position_embeddings=64)
_DECODER = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, vocab_size=100,
                max_position_embeddings=64, num_key_value_heads=2)

_VISION = {
    "resnet18": lambda tv: tv.models.resnet18(num_classes=10),
    "resnext": lambda tv: tv.models.resnet.ResNet(tv.models.resnet.Bottleneck, [1, 1, 1, 1], groups=8,
                                                  width_per_group=4, num_classes=10),
    "wide_resnet": lambda tv: tv.models.resnet.ResNet(tv.models.resnet.Bottleneck, [1, 1, 1, 1],
                                                      width_per_group=128, num_classes=10),
    "vgg11": lambda tv: _small_classifier(tv.models.vgg.VGG(tv.models.vgg.make_layers([16, "M", 32, "M", 64, 64, "M"],
                                                                                      True), 10)),
    "densenet": lambda tv: tv.models.DenseNet(growth_rate=8, block_config=(2, 2, 2), num_init_features=16,
                                              num_classes=10),
    "googlenet": lambda tv: tv.models.googlenet(num_classes=10, aux_logits=False, init_weights=True),
    "squeezenet": lambda tv: tv.models.squeezenet1_1(num_classes=10),
    "shufflenet_v2": lambda tv: tv.models.shufflenet_v2_x0_5(num_classes=10),
    "mobilenet_v2": lambda tv: tv.models.mobilenet_v2(num_classes=10, width_mult=0.5),
    "mobilenet_v3": lambda tv: tv.models.mobilenet_v3_small(num_classes=10),
    "mnasnet": lambda tv: tv.models.mnasnet0_5(num_classes=10),
    "efficientnet": lambda tv: tv.models.efficientnet_b0(num_classes=10),
    "regnet": lambda tv: tv.models.regnet_y_400mf(num_classes=10),
    "convnext": lambda tv: tv.models.ConvNeXt([tv.models.convnext.CNBlockConfig(16, 32, 1),
                                               tv.models.convnext.CNBlockConfig(32, None, 1)], num_classes=10),
    "vit": lambda tv: tv.models.VisionTransformer(IMAGE, 16, 2, 2, 32, 64, num_classes=10),
    "swin": lambda tv: tv.models.SwinTransformer([4, 4], 16, [1, 1], [2, 2], [4, 4], num_classes=10),
    "lraspp": lambda tv: tv.models.segmentation.lraspp_mobilenet_v3_large(num_classes=3, weights_backbone=None),
}
_TEXT = {
    "bert": _text(lambda t: t.BertConfig(**_SMALL), "BertModel"),
    "roberta": _text(lambda t: t.RobertaConfig(**_SMALL, pad_token_id=1), "RobertaModel"),
    "distilbert": _text(lambda t: t.DistilBertConfig(dim=32, n_layers=2, n_heads=2, hidden_dim=64, vocab_size=100,
                                                     max_position_embeddings=64), "DistilBertModel"),
    "albert": _text(lambda t: t.AlbertConfig(**_SMALL, embedding_size=16), "AlbertModel"),
    "electra": _text(lambda t: t.ElectraConfig(**_SMALL, embedding_size=16), "ElectraModel"),
    "deberta_v2": _text(lambda t: t.DebertaV2Config(**_SMALL), "DebertaV2Model"),
    "mpnet": _text(lambda t: t.MPNetConfig(**_SMALL), "MPNetModel"),
    "xlm_roberta": _text(lambda t: t.XLMRobertaConfig(**_SMALL, pad_token_id=1), "XLMRobertaModel"),
    "gpt2": _text(lambda t: t.GPT2Config(n_embd=32, n_layer=2, n_head=2, vocab_size=100, n_positions=64,
                                         use_cache=False), "GPT2Model", with_mask=False),
    "gpt_neo": _text(lambda t: t.GPTNeoConfig(hidden_size=32, num_layers=2, num_heads=2, vocab_size=100,
                                              max_position_embeddings=64, attention_types=[[["global", "local"], 1]],
                                              use_cache=False), "GPTNeoModel", with_mask=False),
    "opt": _text(lambda t: t.OPTConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, ffn_dim=64,
                                       vocab_size=100, max_position_embeddings=64, word_embed_proj_dim=32,
                                       use_cache=False), "OPTModel", with_mask=False),
    "llama": _text(lambda t: t.LlamaConfig(**_DECODER, use_cache=False), "LlamaModel", with_mask=False),
    "mistral": _text(lambda t: t.MistralConfig(**_DECODER, use_cache=False), "MistralModel", with_mask=False),
    "qwen2": _text(lambda t: t.Qwen2Config(**_DECODER, use_cache=False), "Qwen2Model", with_mask=False),
    "phi": _text(lambda t: t.PhiConfig(**_DECODER, use_cache=False), "PhiModel", with_mask=False),
    "gemma": _text(lambda t: t.GemmaConfig(**_DECODER, head_dim=16, use_cache=False), "GemmaModel",
                   with_mask=False),
}
_DECODERS = ("gpt2", "gpt_neo", "llama", "mistral", "qwen2", "phi", "gemma")
_RECURRENT = {f"{kind.lower()}{'_bidirectional' if both else ''}": _recurrent(kind, both, 2 if both else 1)
              for kind in ("LSTM", "GRU", "RNN") for both in (False, True)}
_LIGHT = ("bvlc_alexnet", "densenet121", "inception_v1", "inception_v2", "resnet50", "shufflenet", "squeezenet",
          "vgg19", "zfnet512")


def _entries() -> dict[str, tuple]:
    """name -> (kind, maker, export settings)."""
    entries = {f"light/{name}": ("light", name, None) for name in _LIGHT}
    for name, factory in _VISION.items():
        for opset in (11, 13, 17):
            entries[f"torchvision/{name}@{opset}"] = ("torch", _vision(factory), opset)
        entries[f"torchvision/{name}@dynamo"] = ("torch", _vision(factory), "dynamo")
    for name, make in _TEXT.items():
        # The legacy exporter cannot export the decoders' mask code (aten::diff): they go through dynamo.
        setting = "dynamo" if name in _DECODERS else 17
        entries[f"transformers/{name}@{setting}"] = ("torch", make, setting)
    for name, make in _RECURRENT.items():
        entries[f"recurrent/{name}@13"] = ("torch", make, 13)
    for base in ("torchvision/resnet18@13", "torchvision/mobilenet_v2@13", "transformers/bert@17",
                 "transformers/distilbert@17"):
        entries[f"quantized/{base.split('/')[1]}"] = ("quantized", base, None)
    return entries


ENTRIES = _entries()


def corpus_dir() -> pathlib.Path:
    from sdflow.zoo import models_dir
    return models_dir() / "corpus"


def build(name: str) -> pathlib.Path:
    """The ONNX file of corpus entry ``name`` (made on first use)."""
    path = corpus_dir() / (name.replace("/", "__").replace("@", "_") + ".onnx")
    if path.is_file():
        return path
    kind, maker, setting = ENTRIES[name]
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    if kind == "light":
        import onnx
        onnx.save(_materialised_light(maker), temporary)
    elif kind == "quantized":
        from onnxruntime.quantization import QuantType, quantize_dynamic
        # uint8 weights: ONNX Runtime's uint8 x int8 kernel saturates pairs of products in int16 on this CPU,
        # so with int8 weights its answer is not the exact one sdflow computes.
        quantize_dynamic(build(maker), temporary, weight_type=QuantType.QUInt8)
    else:
        _export_torch(maker, setting, temporary)
    os.replace(temporary, path)
    return path


def _export_torch(maker, setting, path: pathlib.Path) -> None:
    torch, _ = _torch()
    model, args, names, dynamic = maker()
    with torch.no_grad():
        if setting == "dynamo":
            shapes = tuple({axis: torch.export.Dim(dim, min=1, max=64) for axis, dim in dynamic[n].items()}
                           for n in names)
            torch.onnx.export(model, args, input_names=names, dynamic_shapes=shapes, dynamo=True,
                              verbose=False).save(str(path))
        else:
            torch.onnx.export(model, args, str(path), input_names=names, dynamic_axes=dynamic,
                              opset_version=setting, dynamo=False)


def _materialised_light(name: str):
    """ONNX's light graph ``name`` with each ConstantOfShape weight replaced by random values of fan-in scale
    (1-D ones positive: batch-norm scales and variances)."""
    import onnx
    from onnx import numpy_helper
    folder = pathlib.Path(onnx.__file__).parent / "backend" / "test" / "data" / "light"
    model = onnx.load(str(folder / f"light_{name}.onnx"))
    graph, rng = model.graph, np.random.default_rng(0)
    constants = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    constants.update({n.output[0]: numpy_helper.to_array(n.attribute[0].t) for n in graph.node
                      if n.op_type == "Constant"})
    kept = []
    for node in graph.node:
        if node.op_type != "ConstantOfShape":
            kept.append(node)
            continue
        shape = [int(d) for d in constants[node.input[0]]]
        values = rng.standard_normal(shape) / np.sqrt(max(1, int(np.prod(shape[1:]))))
        values = np.abs(values) + 0.5 if len(shape) == 1 else values
        graph.initializer.append(numpy_helper.from_array(values.astype(np.float32), node.output[0]))
    del graph.node[:]
    graph.node.extend(kept)
    if kept[-1].op_type == "Softmax":
        # Random weights saturate the class probabilities to one-hot, which would match trivially: the logits
        # become an output too.
        graph.output.append(onnx.helper.make_tensor_value_info(kept[-1].input[0], onnx.TensorProto.FLOAT, None))
    model.ir_version = max(model.ir_version, 4)  # initializers need not be graph inputs
    return model


def _feeds(model, rng) -> dict[str, np.ndarray]:
    """Random inputs: token ids below 100 (the configs' vocabulary), masks of ones, normal floats; symbolic dims
    are 2 (batch) or 16 (sequence and others)."""
    from sdflow.ir.types import numpy_dtype
    initializers = {i.name for i in model.graph.initializer}
    feeds = {}
    for value in model.graph.input:
        if value.name in initializers:
            continue
        dims = [d.dim_value if d.HasField("dim_value") else (2 if k == 0 else 16)
                for k, d in enumerate(value.type.tensor_type.shape.dim)]
        dtype = numpy_dtype(value.type.tensor_type.elem_type)
        if "mask" in value.name:
            feeds[value.name] = np.ones(dims, dtype)
        elif np.issubdtype(dtype, np.integer):
            feeds[value.name] = rng.integers(0, 100, dims).astype(dtype)
        else:
            feeds[value.name] = rng.standard_normal(dims).astype(dtype)
    return feeds


def run_entry(name: str, passes: str = "O2") -> CorpusResult:
    """Builds, compiles and runs one entry against ONNX Runtime (in this process)."""
    import onnx
    import sdflow
    from sdflow.frontends.onnx.loader import default_opset
    from sdflow.ort import compare_outputs, median_seconds, ort_session
    try:
        path = build(name)
    except Exception as error:  # the exporters raise anything; the corpus records it
        return CorpusResult(name, "export failed", f"{type(error).__name__}: {_first_line(error)}")
    model = onnx.load(str(path))
    result = CorpusResult(name, "pass", opset=default_opset(model), ops=len(model.graph.node))
    feeds = _feeds(model, np.random.default_rng(0))
    session = ort_session(str(path), 2)
    reference = dict(zip([o.name for o in session.get_outputs()], session.run(None, feeds)))
    start = time.perf_counter()
    try:
        compiled = sdflow.compile(str(path), passes=passes)
    except sdflow.UnsupportedOpError as error:
        return dataclasses.replace(result, status="unsupported", detail=_first_line(error))
    except sdflow.SdflowError as error:
        return dataclasses.replace(result, status="compile error", detail=_first_line(error))
    result.compile_s = round(time.perf_counter() - start, 1)
    try:
        outputs = compiled(**feeds).as_dict()
    except sdflow.SdflowError as error:
        return dataclasses.replace(result, status="runtime error", detail=_first_line(error))
    comparisons = compare_outputs(outputs, reference, _tolerance(name))
    result.max_error = max(c.max_abs_error for c in comparisons)
    result.magnitude = max(c.reference_magnitude for c in comparisons)
    if not all(c.ok for c in comparisons):
        return dataclasses.replace(result, status="wrong result", detail="; ".join(str(c) for c in comparisons))
    result.sdflow_ms = round(1e3 * median_seconds(lambda: compiled(**feeds), repeats=10), 3)
    time.sleep(0.2)  # ONNX Runtime's spinning threads are not to steal from the next measurement
    result.onnxruntime_ms = round(1e3 * median_seconds(lambda: session.run(None, feeds), repeats=10), 3)
    return result


def _tolerance(name: str) -> float:
    """1e-4 of the reference's magnitude; 5e-2 for dynamically quantized models, where a one-ulp difference in
    the float ops before a DynamicQuantizeLinear moves its scale and flips values by one step (seen on ResNet-18:
    the first 19 quantizers bit-exact, then a scale one ulp apart)."""
    return 5e-2 if name.startswith("quantized/") else 1e-4


def _first_line(error, limit: int = 200) -> str:
    text = " ".join(str(error).split())
    return text if len(text) <= limit else text[:limit - 3] + "..."


def run_corpus(names: list[str], timeout: float = 900.0, progress=None) -> list[CorpusResult]:
    """Each entry in its own process; a crash, a hang or a stray exception is recorded as that entry's failure."""
    results = []
    for index, name in enumerate(names):
        with tempfile.TemporaryDirectory() as folder:
            out = pathlib.Path(folder) / "result.json"
            command = [sys.executable, "-m", "sdflow.corpus", "--one", name, "--result", str(out)]
            try:
                finished = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
            except subprocess.TimeoutExpired:
                result = CorpusResult(name, "crashed", f"timed out after {timeout:.0f} s")
            else:
                if out.is_file():
                    result = CorpusResult(**json.loads(out.read_text()))
                else:
                    tail = (finished.stderr.strip().splitlines() or ["(no output)"])[-1]
                    result = CorpusResult(name, "crashed", f"exit code {finished.returncode}: {_first_line(tail)}")
        results.append(result)
        if progress:
            progress(result, index + 1, len(names))
    return results


def format_markdown(results: list[CorpusResult], command: str) -> str:
    counts: dict[str, int] = {}
    for r in results:
        counts[r.status] = counts.get(r.status, 0) + 1
    lines = [f"# Model corpus\n", f"Produced by `{command}`. Do not edit by hand.\n",
             f"{len(results)} models: " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) + ".\n",
             "| model | opset | ops | status | compile s | max err | max |ref| | sdflow ms | ORT ms | ratio |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        ratio = f"{r.sdflow_ms / r.onnxruntime_ms:.2f}" if r.sdflow_ms and r.onnxruntime_ms else ""
        lines.append(f"| {r.name} | {r.opset or ''} | {r.ops or ''} | {r.status} | {r.compile_s or ''} | "
                     f"{r.max_error:.1e} | {r.magnitude:.1e} | {r.sdflow_ms or ''} | {r.onnxruntime_ms or ''} | "
                     f"{ratio} |")
    failures = [r for r in results if r.status != "pass"]
    if failures:
        lines += ["", "## Failures", ""] + [f"- **{r.name}** ({r.status}): {r.detail}" for r in failures]
    return "\n".join(lines) + "\n"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-k", dest="pattern", help="only entries matching this shell pattern (e.g. 'light/*')")
    parser.add_argument("--list", action="store_true", help="list the entries and exit")
    parser.add_argument("--markdown", type=pathlib.Path, help="write the table here (docs/models.md)")
    parser.add_argument("--json", type=pathlib.Path, help="write every result here")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds per model (default 900)")


def selected(pattern: str | None) -> list[str]:
    return [n for n in ENTRIES if pattern is None or fnmatch.fnmatch(n, pattern) or pattern in n]


def run(args) -> int:
    names = selected(args.pattern)
    if args.list:
        print("\n".join(names))
        return 0
    command = "sdflow corpus" + (f" -k '{args.pattern}'" if args.pattern else "") + f" --markdown {args.markdown}"
    done: list[CorpusResult] = []

    def progress(result, index, total):
        print(f"[sdflow] {index}/{total} {result.status:<14} {result.name} {result.detail[:120]}", file=sys.stderr,
              flush=True)
        done.append(result)  # the files are rewritten after every model: an interrupted run keeps what it did
        if args.json:
            args.json.write_text(json.dumps([dataclasses.asdict(r) for r in done], indent=1))
        if args.markdown:
            args.markdown.write_text(format_markdown(done, command))

    results = run_corpus(names, args.timeout, progress=progress)
    passed = sum(r.status == "pass" for r in results)
    print(f"{len(results)} models: {passed} pass, {len(results) - passed} not")
    return 0


def _main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--one", required=True)
    parser.add_argument("--result", type=pathlib.Path, required=True)
    args = parser.parse_args()
    args.result.write_text(json.dumps(dataclasses.asdict(run_entry(args.one))))


if __name__ == "__main__":
    _main()
