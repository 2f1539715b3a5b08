"""The pass contract: a pass is a frozen dataclass with a kebab-case ``name`` whose fields are its options;
``apply(graph, ctx) -> PassResult``. Passes are idempotent and say in ``notes`` why they declined a rewrite."""
from __future__ import annotations

import dataclasses
from typing import ClassVar

from sdflow.ir import Graph, PipelineError

__all__ = ["Pass", "PassResult", "PassContext", "register_pass", "available_passes", "create_pass"]


@dataclasses.dataclass
class PassResult:
    modified: bool
    stats: dict = dataclasses.field(default_factory=dict)
    notes: list[str] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class PassContext:
    """What a pass may consult besides the graph: ``explain`` asks passes to record declined rewrites;
    ``calibration`` holds example feeds (dicts by ONNX input name) for passes that measure activations
    (quantize-weights{method=gptq})."""

    explain: bool = False
    calibration: tuple = ()


@dataclasses.dataclass(frozen=True)
class Pass:
    name: ClassVar[str] = ""

    def apply(self, graph: Graph, ctx: PassContext) -> PassResult:
        raise NotImplementedError

    @classmethod
    def summary(cls) -> str:
        return (cls.__doc__ or "").strip().splitlines()[0]

    @classmethod
    def options(cls) -> list[dataclasses.Field]:
        return list(dataclasses.fields(cls))


_PASSES: dict[str, type[Pass]] = {}


def register_pass(cls: type[Pass]) -> type[Pass]:
    if not cls.name or cls.name in _PASSES:
        raise ValueError(f"pass name {cls.name!r} is empty or taken")
    _PASSES[cls.name] = cls
    return cls


def available_passes() -> dict[str, type[Pass]]:
    return dict(sorted(_PASSES.items()))


def _boolean(text: str) -> bool:
    """true/false (1/0, yes/no, on/off); anything else is not a boolean (a ValueError, not False)."""
    value = text.lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ValueError(text)


_CONVERTERS = {int: int, float: float, str: str, bool: _boolean,
               "int": int, "float": float, "str": str, "bool": _boolean}


def create_pass(name: str, options: dict[str, str]) -> Pass:
    """Instantiates pass ``name`` with string options converted to its fields' types."""
    if name not in _PASSES:
        raise PipelineError(f"unknown pass {name!r}; available: {', '.join(_PASSES)}")
    cls = _PASSES[name]
    fields = {f.name: f for f in cls.options()}
    values = {}
    for key, text in options.items():
        if key not in fields:
            raise PipelineError(f"pass {name!r} has no option {key!r}; options: {', '.join(fields) or 'none'}")
        try:
            values[key] = _CONVERTERS[fields[key].type](text)
        except (KeyError, ValueError):
            raise PipelineError(f"pass {name!r}: option {key}={text!r} is not a valid {fields[key].type}") from None
    return cls(**values)
