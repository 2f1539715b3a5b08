"""Pipelines: the spec parser (``'a,b{opt=1}'`` and levels ``O0``/``O1``), and the pass manager that verifies
the IR after every pass, times each pass, and can dump the graph after each one as ``NN-<pass>.sdfg``."""
from __future__ import annotations

import dataclasses
import pathlib
import re
import time

from sdflow.ir import Graph, PipelineError, SdflowError, verify
from .infra import Pass, PassContext, PassResult, create_pass

__all__ = ["LEVELS", "parse_pipeline", "run_pipeline", "PassRecord"]

LEVELS: dict[str, list[str]] = {
    "O0": [],
    "O1": ["fold-constants", "fold-shape-inputs", "eliminate-dead-nodes"],
    # ONNX Runtime's dynamically quantized products as sdflow's int8 op first, Gemms by constant weights as MatMul
    # + Add (the fusions below are written for MatMul), then attention (it needs the scores chain whole), then
    # layouts around it, then row kernels (they take the adds before a LayerNorm), then what is left of
    # element-wise chains, then GEMM epilogues (then 4-bit weights into those).
    "O2": ["fold-constants", "fold-shape-inputs", "eliminate-dead-nodes", "fuse-matmul-integer", "gemm-to-matmul",
           "fuse-attention", "fold-layout", "fuse-normalization", "fuse-elementwise", "fuse-gemm-epilogue", "fuse-dequantize-matmul",
           "fuse-conv-epilogue", "fuse-conv-depthwise", "eliminate-dead-nodes"],
}

_ITEM = re.compile(r"\s*([A-Za-z0-9][\w-]*)\s*(?:\{([^{}]*)\})?\s*")


def parse_pipeline(spec: str) -> list[Pass]:
    """``"O1"``, ``"fold-constants,eliminate-dead-nodes"``, ``"O1,some-pass{opt=3,flag=true}"``."""
    passes: list[Pass] = []
    position = 0
    spec = spec.strip()
    while position < len(spec):
        match = _ITEM.match(spec, position)
        if not match or match.end() == position:
            raise PipelineError(f"cannot parse pass pipeline {spec!r} at character {position}")
        name, options_text = match.group(1), match.group(2)
        if name in LEVELS:
            if options_text:
                raise PipelineError(f"level {name} takes no options")
            passes.extend(create_pass(p, {}) for p in LEVELS[name])
        else:
            options = {}
            for item in filter(None, (o.strip() for o in (options_text or "").split(","))):
                key, sep, value = item.partition("=")
                if not sep:
                    raise PipelineError(f"pass {name!r}: option {item!r} must be key=value")
                options[key.strip()] = value.strip()
            passes.append(create_pass(name, options))
        position = match.end()
        if position < len(spec):
            if spec[position] != ",":
                raise PipelineError(f"expected ',' in pass pipeline {spec!r} at character {position}")
            position += 1
    return passes


@dataclasses.dataclass
class PassRecord:
    name: str
    result: PassResult
    seconds: float
    dump: pathlib.Path | None = None


def run_pipeline(graph: Graph, passes: list[Pass] | str, *, dump_dir=None, ctx: PassContext | None = None,
                 verify_each: bool = True, progress=None, after_each=None) -> list[PassRecord]:
    """Runs ``passes`` on ``graph`` in place; a failing pass is named together with the passes before it.
    ``dump_dir`` gets ``00-input.sdfg`` and ``NN-<pass>.sdfg``; ``after_each(label, graph)`` hears the same
    snapshots (label ``input``, then each pass's name) as they happen."""
    if isinstance(passes, str):
        passes = parse_pipeline(passes)
    ctx = ctx or PassContext()
    dump = pathlib.Path(dump_dir) if dump_dir is not None else None
    if dump is not None:
        dump.mkdir(parents=True, exist_ok=True)
        graph.save(dump / "00-input.sdfg")
    if after_each:
        after_each("input", graph)
    records: list[PassRecord] = []
    for index, pass_ in enumerate(passes, start=1):
        if progress:
            progress(f"pass {index}/{len(passes)}: {pass_.name}")
        start = time.perf_counter()
        try:
            result = pass_.apply(graph, ctx)
            if verify_each:
                # DaCe's own validation (slow on big graphs) runs after the last pass; sdflow's after each.
                verify(graph, dace_validation=index == len(passes))
        except SdflowError as error:
            before = ", ".join(r.name for r in records) or "none"
            raise PipelineError(f"pass {pass_.name!r} failed (passes before it: {before}): {error}") from error
        record = PassRecord(pass_.name, result, time.perf_counter() - start)
        if dump is not None:
            record.dump = dump / f"{index:02d}-{pass_.name}.sdfg"
            graph.save(record.dump)
        if after_each:
            after_each(pass_.name, graph)
        records.append(record)
    return records
