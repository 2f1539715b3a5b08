"""The model corpus: architectures nobody tuned sdflow for, built offline by the project's own code, each compiled
by sdflow and compared with ONNX Runtime.

    sdflow corpus [-k PATTERN] [--list] [--levels O0,O1,O2] [--markdown docs/models.md] [--json FILE [--resume]]

Entries (``source/name``):
- ``light/*``: ONNX's own light model-zoo graphs (opset 8-9 CNNs) with random weights materialised for their
  ConstantOfShape weights (every output would otherwise be one constant), the logits an output beside the
  probabilities;
- ``torchvision/*``: torchvision architectures (reduced widths or depths where the full one is hundreds of MB) at a
  small image size, batch-norm statistics re-estimated on random images, exported by the legacy exporter at opsets
  11, 13 and 17 and by the dynamo exporter at 18; the detectors (SSDlite, RetinaNet, FCOS, Faster R-CNN) with their
  post-processing and RAFT-small (optical flow), by the legacy exporter at 17;
- ``transformers/*``: Hugging Face architectures from small configs (random weights): encoders by the legacy
  exporter at opset 17, decoders by the dynamo exporter (the legacy one cannot export their mask code);
- ``recurrent/*``: LSTM / GRU / RNN modules;
- ``control/*``: modules whose exports hold If and Loop (TorchScript at opset 13, torch.cond by dynamo);
- ``quantized/*``: models above quantized by ONNX Runtime's ``quantize_dynamic`` (uint8 weights) and
  ``quantize_static`` (QDQ and QOperator layouts);
- ``trained/*``: the trained MiniLM-L6 (``sdflow zoo minilm``) and the trained ONNX files installed packages ship.

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


def _calibrated(model, shape, part=None):
    """Batch-norm statistics re-estimated on random inputs of ``shape`` run through ``part`` (the model itself, or
    a detector's backbone, which takes plain batches): random-init networks otherwise output ~0."""
    torch, _ = _torch()
    model.train()
    for module in model.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.reset_running_stats()
            module.momentum = None
    with torch.no_grad():
        for _ in range(3):
            (part or model)(torch.randn(4, *shape[1:]))
    return model.eval()


def _vision(factory, shape=(2, 3, IMAGE, IMAGE), output=None):
    """A torchvision model over random images of ``shape`` (batch dynamic); ``output``: the key of a dict output
    (segmentation models) to export alone."""
    def make():
        torch, torchvision = _torch()
        torch.manual_seed(0)
        model = _calibrated(factory(torchvision), shape)

        class Selected(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.model = model

            def forward(self, image):
                return self.model(image)[output]

        return (Selected().eval() if output else model), (torch.randn(*shape), ), ["image"], {"image": {0: "batch"}}
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


def _hf(config_factory, model_class: str, inputs: dict, output: str = "last_hidden_state", submodule: str = ""):
    """A Hugging Face model from a small config; ``inputs``: name -> (kind, shape, dynamic axes) with kind ``ids``
    (token ids below 100), ``mask`` (ones) or ``float`` (normal); the one ``output`` field is exported.
    ``submodule``: an attribute of the model to export instead (Whisper's encoder)."""
    def make():
        torch, _ = _torch()
        import transformers
        torch.manual_seed(0)
        model = getattr(transformers, model_class)(config_factory(transformers)).eval()
        model = getattr(model, submodule) if submodule else model
        names = list(inputs)

        class Selected(torch.nn.Module):
            """The inputs by keyword, one output."""

            def __init__(self):
                super().__init__()
                self.model = model

            def forward(self, *args):
                return getattr(self.model(**dict(zip(names, args))), output)

        makers = {"ids": lambda shape: torch.randint(0, 100, shape), "mask": lambda shape: torch.ones(
            shape, dtype=torch.int64), "float": torch.randn}
        args = tuple(makers[kind](shape) for kind, shape, _ in inputs.values())
        return Selected().eval(), args, names, {n: dict(axes) for n, (_, _, axes) in inputs.items()}
    return make


def _with_cache(config_factory, model_class: str, kv_heads: int = 2, head_dim: int = 16, past: int = 6):
    """A decoder fed a KV cache of ``past`` earlier positions: ``past_keys``/``past_values`` (layer, batch, heads,
    past, head dim) go into a ``DynamicCache``, so the export holds the cache concatenation, the offset positions
    and the mask over past and new tokens."""
    def make():
        torch, _ = _torch()
        import transformers
        torch.manual_seed(0)
        config = config_factory(transformers)
        model = getattr(transformers, model_class)(config).eval()
        layers = config.num_hidden_layers

        class WithCache(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.model = model

            def forward(self, input_ids, past_keys, past_values):
                cache = transformers.DynamicCache(config=config)
                for layer in range(layers):
                    cache.update(past_keys[layer], past_values[layer], layer)
                return self.model(input_ids=input_ids, past_key_values=cache, use_cache=True).last_hidden_state

        cache_shape = (layers, 2, kv_heads, past, head_dim)
        args = (torch.randint(0, 100, (2, 4)), torch.randn(*cache_shape), torch.randn(*cache_shape))
        cache_axes = {1: "batch", 3: "past"}
        return WithCache().eval(), args, ["input_ids", "past_keys", "past_values"], \
            {"input_ids": {0: "batch", 1: "seq"}, "past_keys": cache_axes, "past_values": cache_axes}
    return make


_TOKENS = {"input_ids": ("ids", (2, 16), {0: "batch", 1: "seq"}),
           "attention_mask": ("mask", (2, 16), {0: "batch", 1: "seq"})}
_SEQ2SEQ = {**_TOKENS, "decoder_input_ids": ("ids", (2, 8), {0: "batch", 1: "target"})}


def _pixels(size: int = 32) -> dict:
    return {"pixel_values": ("float", (2, 3, size, size), {0: "batch"})}


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


def _control(kind: str, scripted: bool):
    """Models whose export holds control flow: ``branch`` (a data-dependent if: TorchScript's If, or torch.cond
    for the dynamo exporter), ``recurrence`` (a Python loop over the time steps: TorchScript's Loop), ``greedy``
    (a decoding-like loop that stacks one row per step: a Loop with scan outputs)."""
    def make():
        torch, _ = _torch()
        torch.manual_seed(0)

        class Branch(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.a, self.b = torch.nn.Linear(16, 16), torch.nn.Linear(16, 16)

            def forward(self, x):
                if bool(x.sum() > 0):
                    return torch.relu(self.a(x))
                return torch.tanh(self.b(x))

        class Cond(Branch):
            def forward(self, x):
                return torch.cond(x.sum() > 0, lambda v: torch.relu(self.a(v)), lambda v: torch.tanh(self.b(v)), (x, ))

        class Recurrence(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.w, self.u = torch.nn.Linear(16, 24), torch.nn.Linear(24, 24)

            def forward(self, x):
                h = torch.zeros(x.size(0), 24)
                for t in range(x.size(1)):
                    h = torch.tanh(self.w(x[:, t]) + self.u(h))
                return h

        class Greedy(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.cell, self.out = torch.nn.Linear(16, 16), torch.nn.Linear(16, 8)

            def forward(self, x):
                rows = []
                h = x
                for _ in range(6):
                    h = torch.tanh(self.cell(h))
                    rows.append(torch.softmax(self.out(h), -1))
                return torch.stack(rows, 1)

        model = {"branch": Branch if scripted else Cond, "recurrence": Recurrence, "greedy": Greedy}[kind]().eval()
        shape = (2, 10, 16) if kind == "recurrence" else (2, 16)
        axes = {0: "batch", 1: "steps"} if kind == "recurrence" else {0: "batch"}
        return (torch.jit.script(model) if scripted else model), (torch.randn(*shape), ), ["x"], {"x": axes}
    return make


def _efficientnet_v2_reduced(tv):
    """EfficientNetV2-S's six stages (three of fused MBConv blocks, three of MBConv blocks with squeeze-excite), one
    block each: the full model's 40 blocks compile for longer than a corpus entry may take."""
    import copy
    settings, last_channel = tv.models.efficientnet._efficientnet_conf("efficientnet_v2_s")
    reduced = [copy.copy(setting) for setting in settings]
    for setting in reduced:
        setting.num_layers = 1
    return tv.models.efficientnet.EfficientNet(reduced, 0.2, last_channel=last_channel, num_classes=10)


def _small_classifier(model):
    """VGG's classifier expects 512 x 7 x 7 features (100M weights): the same three layers, narrower, over the
    8 x 8 maps a 64-pixel image leaves (the legacy exporter cannot pool 8 x 8 adaptively to 7 x 7)."""
    torch, _ = _torch()
    model.avgpool = torch.nn.AdaptiveAvgPool2d((IMAGE // 8, IMAGE // 8))
    model.classifier = torch.nn.Sequential(torch.nn.Linear(64 * (IMAGE // 8) ** 2, 64), torch.nn.ReLU(True),
                                           torch.nn.Dropout(),
                                           torch.nn.Linear(64, 64), torch.nn.ReLU(True), torch.nn.Dropout(),
                                           torch.nn.Linear(64, 10))
    return model


_SMALL = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, vocab_size=100,
              max_position_embeddings=64)
_VIT = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, image_size=32,
            patch_size=8)
_AUDIO = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, conv_dim=(16, 16),
              conv_stride=(5, 2), conv_kernel=(10, 3), num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2,
              do_stable_layer_norm=False)
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
    "efficientnet_v2": lambda tv: _efficientnet_v2_reduced(tv),
    "maxvit": lambda tv: tv.models.MaxVit((IMAGE, IMAGE), stem_channels=16, partition_size=2, block_channels=[16, 32],
                                          block_layers=[1, 1], head_dim=8, stochastic_depth_prob=0.0,
                                          num_classes=10),
}
# Architectures whose input or output differs from an image classifier's.
# Legacy-exporter opsets where a family's ops need a newer one: ViT's attention exports through aten::unflatten
# (13+) and scaled_dot_product_attention (14+), MaxViT's through aten::einsum (12+).
_OPSETS = {"vit": (14, 17), "maxvit": (13, 17)}
# Families also exported at opsets 9 and 15 (the op versions of older and mid-aged files: Upsample, BatchNorm-9, ...).
_EVERY_OPSET = ("resnet18", "mobilenet_v2", "squeezenet", "densenet", "shufflenet_v2", "googlenet")
_VISION_OTHER = {
    # Inception-v3's stem needs at least 75 pixels.
    "inception_v3": _vision(lambda tv: tv.models.inception_v3(num_classes=10, aux_logits=False, init_weights=True),
                            (2, 3, 96, 96)),
    "fcn": _vision(lambda tv: tv.models.segmentation.fcn_resnet50(num_classes=3, weights_backbone=None), output="out"),
    "deeplabv3": _vision(lambda tv: tv.models.segmentation.deeplabv3_mobilenet_v3_large(
        num_classes=3, weights_backbone=None), output="out"),
    "r2plus1d": _vision(lambda tv: tv.models.video.VideoResNet(
        tv.models.video.resnet.BasicBlock, [tv.models.video.resnet.Conv2Plus1D] * 4, [1, 1, 1, 1],
        tv.models.video.resnet.R2Plus1dStem, num_classes=10), (2, 3, 4, 32, 32)),
}
# ---- detection: torchvision's detectors with their post-processing (NMS, TopK over run-time counts) ------------

_TRACING_LIBRARIES: list = []  # torch Library objects: dropped, they would unregister the kernels


def _nms_kernel(boxes, scores, iou_threshold: float):
    """Greedy NMS in PyTorch: the CPU kernel of torchvision::nms that tracing runs (PyPI's torchvision here links
    CUDA-only ops); the export records the op itself, as ONNX NonMaxSuppression."""
    torch, _ = _torch()
    order = scores.argsort(descending=True)
    x1, y1, x2, y2 = boxes.unbind(1)
    area = (x2 - x1) * (y2 - y1)
    suppressed = torch.zeros(len(boxes), dtype=torch.bool)
    keep = []
    for i in order.tolist():
        if suppressed[i]:
            continue
        keep.append(i)
        inter = ((torch.minimum(x2[i], x2) - torch.maximum(x1[i], x1)).clamp(min=0)
                 * (torch.minimum(y2[i], y2) - torch.maximum(y1[i], y1)).clamp(min=0))
        suppressed |= inter / (area[i] + area - inter) > iou_threshold
    return torch.tensor(keep, dtype=torch.int64)


def _roi_align_kernel(input, rois, spatial_scale: float, pooled_height: int, pooled_width: int, sampling_ratio: int,
                      aligned: bool):
    """torchvision's own pure-PyTorch RoIAlign as the CPU kernel of torchvision::roi_align (exported as RoiAlign)."""
    from torchvision.ops.roi_align import _roi_align
    plain = getattr(_roi_align, "__wrapped__", _roi_align)  # not its torch.compile wrapper (tracing refuses that)
    return plain(input, rois, spatial_scale, pooled_height, pooled_width, sampling_ratio, aligned)


def _ops_available() -> bool:
    return True


def _no_op_check() -> None:
    return None


def _traceable_detection_ops() -> None:
    """torchvision::nms gets a CPU kernel and torchvision's op checks pass (TorchScript compiles the functions it
    scripts from this file's source, so they are plain module functions)."""
    torch, torchvision = _torch()
    if not _TRACING_LIBRARIES:
        schemas = torch.library.Library("torchvision", "FRAGMENT")
        if not hasattr(torch.ops.torchvision, "roi_align"):
            schemas.define("roi_align(Tensor input, Tensor rois, float spatial_scale, SymInt pooled_height, "
                           "SymInt pooled_width, int sampling_ratio, bool aligned) -> Tensor")
        library = torch.library.Library("torchvision", "IMPL", "CPU")
        library.impl("nms", _nms_kernel)
        library.impl("roi_align", _roi_align_kernel)
        _TRACING_LIBRARIES.extend([schemas, library])
    import importlib
    extension, boxes, roi_align = (importlib.import_module(f"torchvision.{m}")  # (the modules, not the functions
                                   for m in ("extension", "ops.boxes", "ops.roi_align"))  # torchvision.ops exports)
    extension._has_ops = _ops_available
    boxes._assert_has_ops = _no_op_check
    roi_align._has_ops = _ops_available
    roi_align._assert_has_ops = _no_op_check


def _detection(factory):
    """A torchvision detector over one random 128x128 image, exported with its post-processing (the image list
    holds one [3, H, W] image; the outputs are boxes, scores and labels, their count known only at run time)."""
    def make():
        torch, torchvision = _torch()
        _traceable_detection_ops()
        torch.manual_seed(0)
        model = factory(torchvision)
        model = _calibrated(model, (2, 3, 128, 128), part=model.backbone)
        return model, ([torch.rand(3, 128, 128)], ), ["image"], None
    return make


def _mobilenet_fpn(tv, maps_extra=True):
    from torchvision.models.detection.backbone_utils import _mobilenet_extractor
    from torchvision.ops.feature_pyramid_network import LastLevelP6P7
    return _mobilenet_extractor(tv.models.mobilenet_v3_small(weights=None), True, 6,
                                extra_blocks=LastLevelP6P7(256, 256) if maps_extra else None)


def _anchors(sizes, ratios):
    from torchvision.models.detection.anchor_utils import AnchorGenerator
    return AnchorGenerator(tuple((s, ) for s in sizes), (ratios, ) * len(sizes))


_DETECTION = {
    "ssdlite320_mobilenet_v3_large": lambda tv: tv.models.detection.ssdlite320_mobilenet_v3_large(
        weights=None, weights_backbone=None, num_classes=5),
    # RetinaNet's and FCOS's heads and post-processing on a MobileNetV3-small FPN (the ResNet-50 one is 130 MB).
    "retinanet_mobilenet_fpn": lambda tv: tv.models.detection.RetinaNet(
        _mobilenet_fpn(tv), 5, min_size=128, max_size=128,
        anchor_generator=_anchors((32, 64, 128, 256), (0.5, 1.0, 2.0))),
    # Two stages: region proposals (NMS over the RPN's boxes), RoiAlign over the FPN levels, the box head.
    "fasterrcnn_mobilenet_v3_large_320_fpn": lambda tv: tv.models.detection.fasterrcnn_mobilenet_v3_large_320_fpn(
        weights=None, weights_backbone=None, num_classes=5, min_size=128, max_size=128, box_score_thresh=0.01),
    "fcos_mobilenet_fpn": lambda tv: tv.models.detection.FCOS(
        _mobilenet_fpn(tv), 5, min_size=128, max_size=128, score_thresh=0.01,
        anchor_generator=_anchors((8, 16, 32, 64), (1.0, ))),
}

def _optical_flow():
    """RAFT-small (optical flow) on two random 128x128 frames (its correlation pyramid needs 128 pixels), three
    refinement steps, the last flow field: GridSample over the correlation volume, a GRU of convolutions."""
    def make():
        torch, torchvision = _torch()
        torch.manual_seed(0)
        raft = torchvision.models.optical_flow.raft_small(weights=None).eval()

        class LastFlow(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.raft = raft

            def forward(self, image1, image2):
                return self.raft(image1, image2, num_flow_updates=3)[-1]

        frames = (torch.rand(1, 3, 128, 128), torch.rand(1, 3, 128, 128))
        return LastFlow().eval(), frames, ["image1", "image2"], None
    return make


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
    "roformer": _text(lambda t: t.RoFormerConfig(**_SMALL, embedding_size=32), "RoFormerModel"),
    "convbert": _text(lambda t: t.ConvBertConfig(**_SMALL, embedding_size=32), "ConvBertModel"),
    "camembert": _text(lambda t: t.CamembertConfig(**_SMALL, pad_token_id=1), "CamembertModel"),
    "bloom": _text(lambda t: t.BloomConfig(hidden_size=32, n_layer=2, n_head=2, vocab_size=100, use_cache=False),
                   "BloomModel", with_mask=False),
    "falcon": _text(lambda t: t.FalconConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                             vocab_size=100, use_cache=False), "FalconModel", with_mask=False),
    "gptj": _text(lambda t: t.GPTJConfig(n_embd=32, n_layer=2, n_head=2, vocab_size=100, n_positions=64, rotary_dim=8,
                                         use_cache=False), "GPTJModel", with_mask=False),
    "stablelm": _text(lambda t: t.StableLmConfig(**_DECODER, use_cache=False), "StableLmModel", with_mask=False),
    "t5": _hf(lambda t: t.T5Config(vocab_size=100, d_model=32, d_kv=16, d_ff=64, num_layers=2, num_heads=2,
                                   decoder_start_token_id=0, use_cache=False), "T5Model", _SEQ2SEQ),
    "bart": _hf(lambda t: t.BartConfig(vocab_size=100, d_model=32, encoder_layers=2, decoder_layers=2,
                                       encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=64,
                                       decoder_ffn_dim=64, max_position_embeddings=64, use_cache=False),
                "BartModel", _SEQ2SEQ),
    "marian": _hf(lambda t: t.MarianConfig(vocab_size=100, d_model=32, encoder_layers=2, decoder_layers=2,
                                           encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=64,
                                           decoder_ffn_dim=64, max_position_embeddings=64, pad_token_id=0,
                                           decoder_start_token_id=0, use_cache=False), "MarianModel", _SEQ2SEQ),
    "vit": _hf(lambda t: t.ViTConfig(**_VIT), "ViTModel", _pixels()),
    "deit": _hf(lambda t: t.DeiTConfig(**_VIT), "DeiTModel", _pixels()),
    "swin": _hf(lambda t: t.SwinConfig(image_size=32, patch_size=4, embed_dim=16, depths=[1, 1], num_heads=[2, 2],
                                       window_size=4), "SwinModel", _pixels()),
    "convnext": _hf(lambda t: t.ConvNextConfig(num_stages=2, hidden_sizes=[16, 32], depths=[1, 1], image_size=32),
                    "ConvNextModel", _pixels()),
    "segformer": _hf(lambda t: t.SegformerConfig(num_encoder_blocks=2, depths=[1, 1], sr_ratios=[2, 1],
                                                 hidden_sizes=[16, 32], patch_sizes=[7, 3], strides=[4, 2],
                                                 num_attention_heads=[1, 2], mlp_ratios=[2, 2],
                                                 decoder_hidden_size=32), "SegformerModel", _pixels()),
    "whisper_encoder": _hf(lambda t: t.WhisperConfig(vocab_size=100, num_mel_bins=16, d_model=32, encoder_layers=2,
                                                     encoder_attention_heads=2, decoder_layers=1,
                                                     decoder_attention_heads=2, encoder_ffn_dim=64,
                                                     decoder_ffn_dim=64, max_source_positions=32,
                                                     max_target_positions=32, pad_token_id=0, bos_token_id=1,
                                                     eos_token_id=2, decoder_start_token_id=1), "WhisperModel",
                           {"input_features": ("float", (2, 16, 64), {0: "batch"})}, submodule="encoder"),
    "wav2vec2": _hf(lambda t: t.Wav2Vec2Config(**_AUDIO), "Wav2Vec2Model",
                    {"input_values": ("float", (2, 800), {0: "batch"})}),
    "hubert": _hf(lambda t: t.HubertConfig(**_AUDIO), "HubertModel",
                  {"input_values": ("float", (2, 800), {0: "batch"})}),
    "clip": _hf(lambda t: t.CLIPConfig(text_config=dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                                        intermediate_size=64, vocab_size=100,
                                                        max_position_embeddings=64),
                                       vision_config=dict(**_VIT), projection_dim=16), "CLIPModel",
                {**_TOKENS, **_pixels()}, output="logits_per_image"),
    "llama_kv": _with_cache(lambda t: t.LlamaConfig(**_DECODER), "LlamaModel"),
    "mistral_kv": _with_cache(lambda t: t.MistralConfig(**_DECODER), "MistralModel"),
    "gpt2_kv": _with_cache(lambda t: t.GPT2Config(n_embd=32, n_layer=2, n_head=2, vocab_size=100, n_positions=64),
                           "GPT2Model"),
}
_DECODERS = ("gpt2", "gpt_neo", "llama", "mistral", "qwen2", "phi", "gemma", "bloom", "falcon", "gptj", "stablelm",
             "llama_kv", "mistral_kv", "gpt2_kv")
_RECURRENT = {f"{kind.lower()}{'_bidirectional' if both else ''}": _recurrent(kind, both, 2 if both else 1)
              for kind in ("LSTM", "GRU", "RNN") for both in (False, True)}
_LIGHT = ("bvlc_alexnet", "densenet121", "inception_v1", "inception_v2", "resnet50", "shufflenet", "squeezenet",
          "vgg19", "zfnet512")


def _entries() -> dict[str, tuple]:
    """name -> (kind, maker, export settings)."""
    entries = {f"light/{name}": ("light", name, None) for name in _LIGHT}
    for name, factory in _VISION.items():
        for opset in _OPSETS.get(name, (9, 11, 13, 15, 17) if name in _EVERY_OPSET else (11, 13, 17)):
            entries[f"torchvision/{name}@{opset}"] = ("torch", _vision(factory), opset)
        entries[f"torchvision/{name}@dynamo"] = ("torch", _vision(factory), "dynamo")
    for name, make in _VISION_OTHER.items():
        for setting in (13, "dynamo"):
            entries[f"torchvision/{name}@{setting}"] = ("torch", make, setting)
    for name, factory in _DETECTION.items():
        # (the dynamo exporter cannot export their post-processing: torch.export stops at its data-dependent sizes)
        entries[f"torchvision/{name}@17"] = ("torch", _detection(factory), 17)
    entries["torchvision/raft_small@17"] = ("torch", _optical_flow(), 17)
    for name, make in _TEXT.items():
        # The legacy exporter cannot export the decoders' mask code (aten::diff): they go through dynamo.
        settings = ("dynamo", ) if name in _DECODERS else (13, 15, 17) if name in ("bert", "distilbert") else (17, )
        for setting in settings:
            entries[f"transformers/{name}@{setting}"] = ("torch", make, setting)
    for name, make in _RECURRENT.items():
        entries[f"recurrent/{name}@13"] = ("torch", make, 13)
    for kind in ("branch", "recurrence", "greedy"):
        entries[f"control/{kind}-scripted@13"] = ("torch", _control(kind, True), 13)
    entries["control/branch-cond@dynamo"] = ("torch", _control("branch", False), "dynamo")
    for base in ("torchvision/resnet18@13", "torchvision/mobilenet_v2@13", "transformers/bert@17",
                 "transformers/distilbert@17"):
        entries[f"quantized/{base.split('/')[1]}"] = ("quantized", base, None)
    for base in ("torchvision/resnet18@13", "torchvision/mobilenet_v2@13", "transformers/bert@17"):
        for layout in ("QDQ", "QOperator"):
            entries[f"quantized/{base.split('/')[1]}-static-{layout.lower()}"] = ("quantized_static", base, layout)
    entries["trained/minilm_l6"] = ("zoo", "minilm", None)
    for path in _shipped_files():
        entries[f"trained/{path.parent.parent.name}-{path.stem}"] = ("shipped", path, None)
    return entries


def _shipped_files() -> list[pathlib.Path]:
    """The trained ONNX files installed packages ship as data (ONNX Runtime's sample models)."""
    try:
        import onnxruntime
    except ImportError:
        return []
    return sorted((pathlib.Path(onnxruntime.__file__).parent / "datasets").glob("*.onnx"))


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
    elif kind == "quantized_static":
        _quantize_static(build(maker), temporary, setting)
    elif kind == "zoo":
        from sdflow.zoo import export
        return export(maker)
    elif kind == "shipped":
        return maker
    else:
        _export_torch(maker, setting, temporary)
    os.replace(temporary, path)
    return path


def _quantize_static(source: pathlib.Path, target: pathlib.Path, layout: str) -> None:
    """ONNX Runtime's static quantizer (per-channel int8 weights, uint8 activations, min-max calibration on a few
    random batches) in its QDQ or QOperator layout."""
    import onnx
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    model = onnx.load(str(source))

    class Batches(CalibrationDataReader):
        def __init__(self):
            self.feeds = iter([_feeds(model, np.random.default_rng(seed)) for seed in range(4)])

        def get_next(self):
            return next(self.feeds, None)

    quantize_static(str(source), str(target), Batches(), quant_format=getattr(QuantFormat, layout),
                    per_channel=True, weight_type=QuantType.QInt8, activation_type=QuantType.QUInt8)


def _export_torch(maker, setting, path: pathlib.Path) -> None:
    torch, _ = _torch()
    model, args, names, dynamic = maker()
    # nn.MultiheadAttention's inference fast path (torchvision's ViT) has no ONNX export; the exporters need the
    # plain ops it stands for.
    torch.backends.mha.set_fastpath_enabled(False)
    if setting != "dynamo" and setting < 14:
        # scaled_dot_product_attention exports from opset 14 on: older files carry the eager attention (explicit
        # MatMul, Softmax), which Hugging Face models switch to by their config.
        for module in model.modules():
            if hasattr(getattr(module, "config", None), "_attn_implementation"):
                module.config._attn_implementation = "eager"
    with torch.no_grad():
        if setting == "dynamo":
            dims = {dim: torch.export.Dim(dim, min=1, max=64) for n in names for dim in dynamic[n].values()}
            shapes = tuple({axis: dims[dim] for axis, dim in dynamic[n].items()} for n in names)
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
    """Random inputs: token ids below 100 (the configs' vocabulary), masks of ones, normal floats; a symbolic dim
    is 2 where first seen as a leading axis (batch), else 16 (sequence and others), one size per dim name."""
    from sdflow.ir.types import numpy_dtype
    initializers = {i.name for i in model.graph.initializer}
    feeds, sizes = {}, {}
    for value in model.graph.input:
        if value.name in initializers:
            continue
        dims = [d.dim_value if d.HasField("dim_value") else
                sizes.setdefault(d.dim_param or object(), 2 if k == 0 else 16)
                for k, d in enumerate(value.type.tensor_type.shape.dim)]
        dtype = numpy_dtype(value.type.tensor_type.elem_type)
        if "mask" in value.name:
            feeds[value.name] = np.ones(dims, dtype)
        elif np.issubdtype(dtype, np.integer):
            feeds[value.name] = rng.integers(0, 100, dims).astype(dtype)
        else:
            feeds[value.name] = rng.standard_normal(dims).astype(dtype)
    return feeds


def run_entry(name: str, levels: tuple[str, ...] = ("O2", ), options=None) -> CorpusResult:
    """Builds one entry, compiles it at every pipeline of ``levels`` and compares each with ONNX Runtime (in this
    process); the first level that fails gives the result, the last one is timed."""
    import onnx
    from sdflow.frontends.onnx.loader import default_opset
    from sdflow.ort import median_seconds, ort_session
    try:
        path = build(name)
    except Exception as error:  # the exporters raise anything; the corpus records it
        return CorpusResult(name, "export failed", f"{type(error).__name__}: {_first_line(error)}")
    model = onnx.load(str(path))
    result = CorpusResult(name, "pass", opset=default_opset(model), ops=len(model.graph.node))
    feeds = _feeds(model, np.random.default_rng(0))
    session = ort_session(str(path), 2)
    reference = dict(zip([o.name for o in session.get_outputs()], session.run(None, feeds)))
    for level in levels:
        compiled, failed = _checked(name, path, level, feeds, reference, result, options)
        if failed is not None:
            prefix = f"[{level}] " if len(levels) > 1 else ""
            return dataclasses.replace(failed, detail=prefix + failed.detail)
    # (warm-up enough for the thread policy's first comparison of thread counts to finish)
    result.sdflow_ms = round(1e3 * median_seconds(lambda: compiled(**feeds), repeats=10, warmup=10), 3)
    time.sleep(0.2)  # ONNX Runtime's spinning threads are not to steal from the next measurement
    result.onnxruntime_ms = round(1e3 * median_seconds(lambda: session.run(None, feeds), repeats=10), 3)
    return result


def _checked(name: str, path, passes: str, feeds: dict, reference: dict, result: CorpusResult, options=None):
    """(the model compiled with ``passes``, None) when its outputs match ``reference`` (``result`` gets the
    compile time and errors), else (None, the failed result)."""
    import sdflow
    from sdflow.ort import compare_outputs
    start = time.perf_counter()
    try:
        compiled = sdflow.compile(str(path), passes=passes, options=options)
    except sdflow.UnsupportedOpError as error:
        return None, dataclasses.replace(result, status="unsupported", detail=_first_line(error))
    except sdflow.SdflowError as error:
        return None, dataclasses.replace(result, status="compile error", detail=_first_line(error))
    result.compile_s = round(time.perf_counter() - start, 1)
    try:
        outputs = compiled(**feeds).as_dict()
    except sdflow.SdflowError as error:
        return None, dataclasses.replace(result, status="runtime error", detail=_first_line(error))
    if name.split("/")[-1].split("@")[0] in _DETECTION:
        error, magnitude, mismatch = _detections_differ(outputs, reference, _tolerance(name))
        result.max_error, result.magnitude = max(result.max_error, error), magnitude
        if mismatch:
            return None, dataclasses.replace(result, status="wrong result", detail=mismatch)
        return compiled, None
    comparisons = compare_outputs(outputs, reference, _tolerance(name))
    result.max_error = max(result.max_error, max(c.max_abs_error for c in comparisons))
    result.magnitude = max(c.reference_magnitude for c in comparisons)
    if not all(c.ok for c in comparisons):
        return None, dataclasses.replace(result, status="wrong result", detail="; ".join(str(c) for c in comparisons))
    return compiled, None


def _detections_differ(outputs: dict, reference: dict, tolerance: float) -> tuple[float, float, str]:
    """A detector's (boxes, scores, labels) against ONNX Runtime's as a set: every reference detection pairs with
    one of ours of the same label, its score within ``tolerance`` of the scores' magnitude (at least 1) and its box
    within 10x that of the boxes' magnitude. Two detections whose
    scores differ by less than the float error may come out in either order (random weights give many near-ties),
    so the lists are not compared position by position. Returns (max error of the pairs, magnitude, mismatch)."""
    # Which output is which (torchvision orders them boxes, scores, labels or boxes, labels, scores): by type.
    names = list(reference)
    box_name = next(n for n in names if np.asarray(reference[n]).ndim == 2)
    label_name = next(n for n in names if np.asarray(reference[n]).dtype.kind in "iu")
    score_name = next(n for n in names if n not in (box_name, label_name))
    boxes, scores, labels = (np.asarray(reference[n]) for n in (box_name, score_name, label_name))
    our_boxes, our_scores, our_labels = (np.asarray(outputs[n]) for n in (box_name, score_name, label_name))
    magnitude = float(max(np.abs(boxes).max(initial=0), np.abs(scores).max(initial=0)))
    if our_scores.shape != scores.shape or our_boxes.shape != boxes.shape:
        return 0.0, magnitude, f"{len(our_scores)} detections, ONNX Runtime {len(scores)}"
    # Boxes are decoded from regression outputs times anchor sizes (up to several times the image, exp() of the
    # size deltas): their float error is that of the network's outputs scaled up, so they get 10x the tolerance.
    box_tolerance = 10 * tolerance * max(1.0, float(np.abs(boxes).max(initial=0)))
    score_tolerance = tolerance * max(1.0, float(np.abs(scores).max(initial=0)))
    free, worst = set(range(len(our_scores))), 0.0
    for i in range(len(scores)):
        found = [j for j in sorted(free) if our_labels[j] == labels[i]
                 and abs(our_scores[j] - scores[i]) <= score_tolerance
                 and np.abs(our_boxes[j] - boxes[i]).max(initial=0) <= box_tolerance]
        if not found:
            return worst, magnitude, (f"ONNX Runtime's detection {i} (label {labels[i]}, score {scores[i]:.6g}, box "
                                      f"{np.round(boxes[i], 3).tolist()}) has no counterpart")
        j = min(found, key=lambda k: abs(our_scores[k] - scores[i]) + np.abs(our_boxes[k] - boxes[i]).max(initial=0))
        worst = max(worst, float(abs(our_scores[j] - scores[i])), float(np.abs(our_boxes[j] - boxes[i]).max(initial=0)))
        free.discard(j)
    return worst, magnitude, ""


def _tolerance(name: str) -> float:
    """1e-4 of the reference's magnitude; 5e-2 for quantized models, where a one-ulp difference in the float ops
    before a quantizer flips a value by one step (dynamic ones also move the scale: seen on ResNet-18, the first 19
    quantizers bit-exact, then a scale one ulp apart)."""
    return 5e-2 if name.startswith("quantized/") else 1e-4


def _first_line(error, limit: int = 200) -> str:
    text = " ".join(str(error).split())
    return text if len(text) <= limit else text[:limit - 3] + "..."


def run_corpus(names: list[str], timeout: float = 900.0, progress=None, levels=("O2", ),
               memory_reuse: bool = True) -> list[CorpusResult]:
    """Each entry in its own process; a crash, a hang or a stray exception is recorded as that entry's failure.
    ``memory_reuse=False``: every tensor its own buffer (the option memory_reuse=false, part of the build key),
    for differential runs."""
    results = []
    for index, name in enumerate(names):
        with tempfile.TemporaryDirectory() as folder:
            out = pathlib.Path(folder) / "result.json"
            command = [sys.executable, "-m", "sdflow.corpus", "--one", name, "--result", str(out), "--levels",
                       ",".join(levels)] + ([] if memory_reuse else ["--no-memory-reuse"])
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


def format_markdown(results: list[CorpusResult], command: str, note: str = "") -> str:
    counts: dict[str, int] = {}
    for r in results:
        counts[r.status] = counts.get(r.status, 0) + 1
    lines = [f"# Model corpus\n", f"Produced by `{command}`. Do not edit by hand.\n",
             "Max err: the largest absolute difference from ONNX Runtime over the outputs (NaN = NaN); a model passes "
             "within 1e-4 of max(1, max |ref|) (5e-2 for quantized ones); a detector's detections pair up with ONNX "
             "Runtime's as a set, scores within that tolerance and boxes within 10x it (max err: the largest "
             "difference of a pair). sdflow ms / ORT ms: medians of 10 calls in "
             "one process, both at 2 threads; not the benchmark protocol of docs/performance.md.\n"
             + (f"\n{note}\n" if note else ""),
             f"{len(results)} models: " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) +
             f" ({100 * counts.get('pass', 0) / max(1, len(results)):.1f}% pass).\n",
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
    parser.add_argument("--levels", default="O2",
                        help="pipelines to compile every model at, each compared with ONNX Runtime; the last is timed "
                             "(a differential run: --levels O0,O1,O2)")
    parser.add_argument("--no-memory-reuse", action="store_true",
                        help="every tensor its own buffer (differential runs against the memory plan)")
    parser.add_argument("--note", default="", help="a paragraph for the table's header (how the run was made)")
    parser.add_argument("--resume", action="store_true",
                        help="keep the results already in --json and run only the entries it lacks")


def selected(pattern: str | None) -> list[str]:
    return [n for n in ENTRIES if pattern is None or fnmatch.fnmatch(n, pattern) or pattern in n]


def run(args) -> int:
    names = selected(args.pattern)
    if args.list:
        print("\n".join(names))
        return 0
    command = "sdflow corpus" + (f" -k '{args.pattern}'" if args.pattern else "") + (
        f" --levels {args.levels}" if args.levels != "O2" else "") + (
        " --no-memory-reuse" if args.no_memory_reuse else "") + f" --markdown {args.markdown}"
    done: list[CorpusResult] = []
    if args.resume:
        if not args.json:
            from sdflow.ir.errors import SdflowError
            raise SdflowError("--resume needs --json FILE (the results of the interrupted run)")
        kept = {r["name"]: CorpusResult(**r) for r in json.loads(args.json.read_text())} if args.json.is_file() else {}
        # Results outside -k stay in the file and the table: resuming with a pattern adds to a full run.
        done = [result for name, result in kept.items() if name in ENTRIES]
        names = [n for n in names if n not in kept]

    order = {name: position for position, name in enumerate(ENTRIES)}

    def write() -> None:  # after every model: an interrupted run keeps what it did
        done.sort(key=lambda r: order.get(r.name, len(order)))
        if args.json:
            args.json.write_text(json.dumps([dataclasses.asdict(r) for r in done], indent=1))
        if args.markdown:
            args.markdown.write_text(format_markdown(done, command, args.note))

    def progress(result, index, total):
        print(f"[sdflow] {index}/{total} {result.status:<14} {result.name} {result.detail[:160]}", file=sys.stderr,
              flush=True)
        done.append(result)
        write()

    run_corpus(names, args.timeout, progress=progress, levels=tuple(args.levels.split(",")),
               memory_reuse=not args.no_memory_reuse)
    write()
    results = done
    passed = sum(r.status == "pass" for r in results)
    print(f"{len(results)} models: {passed} pass, {len(results) - passed} not")
    return 0


def _main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--one", required=True)
    parser.add_argument("--result", type=pathlib.Path, required=True)
    parser.add_argument("--levels", default="O2")
    parser.add_argument("--no-memory-reuse", action="store_true")
    args = parser.parse_args()
    options = {"memory_reuse": False} if args.no_memory_reuse else None
    result = run_entry(args.one, tuple(args.levels.split(",")), options)
    args.result.write_text(json.dumps(dataclasses.asdict(result)))


if __name__ == "__main__":
    _main()
