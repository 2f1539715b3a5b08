"""Typed options that choose kernels (``sdflow.compile(..., options=...)``, ``--option NAME=VALUE``). They reach the
generated code only through the op nodes' ``implementation`` (set by ``codegen.lowering.select.select_kernels``)
and the build key, so that a build made with other options is never loaded for these."""
from __future__ import annotations

import dataclasses
import json
import typing

from sdflow.ir import CompileError

__all__ = ["KernelOptions", "parse_options"]


@dataclasses.dataclass(frozen=True)
class KernelOptions:
    """Each field is a kernel family's switch; the defaults are what measured fastest (docs/performance.md)."""

    direct_conv: bool = True  # float32 Conv with constant weights: the direct kernels (else im2col + BLAS)
    winograd: bool = True  # 3x3 stride-1 convolutions of the direct kernels: Winograd F(2x2, 3x3)
    channel_vectors: bool = True  # small images with many taps: vectors over output channels
    depthwise_rows: bool = True  # depthwise convolutions: rows straight from the image (else padded planes)
    depthwise_channels: bool = True  # depthwise convolutions of small planes: vectors over channels
    gemm: str = "packed"  # float32 products: "packed" (codegen/kernels/gemm.h) or "blas" (OpenBLAS sgemm)
    memory_reuse: bool = True  # intermediate tensors share buffers by the verified memory plan

    CHOICES: typing.ClassVar[dict] = {"gemm": ("packed", "blas")}

    def key(self) -> str:
        """A stable text of every field, for cache keys."""
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    def describe(self) -> str:
        default = KernelOptions()
        changed = [f"{f.name}={getattr(self, f.name)}" for f in dataclasses.fields(self)
                   if getattr(self, f.name) != getattr(default, f.name)]
        return ", ".join(changed) or "defaults"


def _value(field: dataclasses.Field, value):
    name = field.name
    if field.type in ("bool", bool):
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in ("1", "true", "yes", "on"):
            return True
        if text in ("0", "false", "no", "off"):
            return False
        raise CompileError(f"option {name!r} takes true or false, not {value!r}")
    choices = KernelOptions.CHOICES.get(name)
    if choices and str(value) not in choices:
        raise CompileError(f"option {name!r} takes one of {', '.join(choices)}, not {value!r}")
    return str(value)


def parse_options(options=None) -> KernelOptions:
    """``options``: None, a KernelOptions, a dict, or ``NAME=VALUE`` strings (the CLI's ``--option``)."""
    if options is None:
        return KernelOptions()
    if isinstance(options, KernelOptions):
        return options
    if isinstance(options, (list, tuple)):
        pairs = {}
        for item in options:
            name, sep, value = str(item).partition("=")
            if not sep:
                raise CompileError(f"option {item!r} is not NAME=VALUE")
            pairs[name.strip().replace("-", "_")] = value.strip()
        options = pairs
    if not isinstance(options, dict):
        raise CompileError(f"options must be a dict or NAME=VALUE strings, not {type(options).__name__}")
    fields = {f.name: f for f in dataclasses.fields(KernelOptions)}
    unknown = sorted(set(options) - set(fields))
    if unknown:
        raise CompileError(f"unknown option(s) {', '.join(unknown)}; options are {', '.join(fields)}")
    return KernelOptions(**{name: _value(fields[name], value) for name, value in options.items()})
