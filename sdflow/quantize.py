"""``sdflow quantize MODEL -o OUT.onnx -p 'quantize-weights{...}'``: the quantization passes' weights written back
into the ONNX model, as ONNX Runtime reads them. Each quantized MatMul weight initializer W becomes initializers
W_q<bits> (uint8 or uint4 codes), W_scales and W_zero_points and a DequantizeLinear (axis 0, block_size = group)
that produces W again, so every node that read W reads the dequantized weight; the model is converted to opset 21
(the first with blocked DequantizeLinear) when it is older. Only the weights change: the rest of the graph is the
file's own, not sdflow's optimised graph."""
from __future__ import annotations

import dataclasses
import pathlib

import numpy as np
import onnx
from onnx import helper, numpy_helper

from sdflow.frontends.onnx import import_model
from sdflow.ir import ModelLoadError, PipelineError, SdflowError
from sdflow.passes import PassContext, parse_pipeline
from sdflow.passes.quantization.quantize_weights import QuantizeWeights, dequantize_inputs, quantize_graph

__all__ = ["quantize_onnx", "QuantizeSummary"]

BLOCKED_DEQUANTIZE_OPSET = 21


@dataclasses.dataclass
class QuantizeSummary:
    weights: int          # initializers replaced
    float_bytes: int      # their float32 bytes
    quantized_bytes: int  # the codes (packed: 4 bits per uint4), scales and zero points
    mean_relative_error: float | None  # over the calibration inputs, when there were some
    notes: list[str]


def quantize_onnx(model, passes: str, output, calibration=()) -> QuantizeSummary:
    """Runs the quantization ``passes`` on ``model`` (a path or ModelProto) and writes the quantized ONNX model to
    ``output``; ``calibration``: feeds, as ``sdflow.compile`` takes them."""
    pipeline = parse_pipeline(passes)
    if not pipeline or not all(isinstance(p, QuantizeWeights) for p in pipeline):
        raise PipelineError("sdflow quantize writes the weights of quantize-weights passes only; other passes "
                            f"rewrite the graph itself (got {', '.join(p.name for p in pipeline) or 'none'})")
    if isinstance(model, (str, pathlib.Path)):
        try:
            proto = onnx.load(str(model))
        except Exception as error:  # a missing file, or bytes that are no ONNX model (protobuf's own errors)
            raise ModelLoadError(f"cannot read ONNX model {str(model)!r}: {error}") from None
    else:
        proto = onnx.ModelProto.FromString(model.SerializeToString())
    graph = import_model(proto)
    results, bits_of, errors, notes = {}, {}, [], []
    for pass_ in pipeline:
        pass_.check_calibration(calibration)
        found, pass_notes = quantize_graph(graph, pass_, calibration if pass_.method == "gptq" else (), results)
        bits_of.update({name: pass_.bits for name in results if name not in bits_of})
        errors += found
        notes += pass_notes
    initializers = {init.name: init for init in proto.graph.initializer}
    by_ir_name = _initializer_names(initializers, results)
    if _opset(proto) < BLOCKED_DEQUANTIZE_OPSET:
        proto = onnx.version_converter.convert_version(proto, BLOCKED_DEQUANTIZE_OPSET)
        initializers = {init.name: init for init in proto.graph.initializer}
    taken = {init.name for init in proto.graph.initializer} | {o for n in proto.graph.node for o in n.output}
    float_bytes = quantized_bytes = 0
    nodes = []
    for ir_name, (result, _) in results.items():
        onnx_name = by_ir_name.get(ir_name)
        if onnx_name is None:
            notes.append(f"weight {ir_name} is not an initializer of the file: left as it is")
            continue
        bits = bits_of[ir_name]
        codes, scales, zeros = dequantize_inputs(result, bits)
        names = [_fresh(f"{onnx_name}_{suffix}", taken) for suffix in (f"q{bits}", "scales", "zero_points")]
        proto.graph.initializer.remove(initializers[onnx_name])
        proto.graph.initializer.extend(numpy_helper.from_array(v, n) for v, n in zip((codes, scales, zeros), names))
        nodes.append(helper.make_node("DequantizeLinear", names, [onnx_name], name=f"dequantize_{onnx_name}",
                                      axis=0, block_size=int(result.group_size)))
        stored = 8 if bits == 8 else 4  # bits per code and zero point in the file (3-bit codes as uint4)
        float_bytes += codes.size * 4
        quantized_bytes += (codes.size * stored + 7) // 8 + scales.nbytes + (zeros.size * stored + 7) // 8
    for node in reversed(nodes):  # (they read initializers only: first in the node list)
        proto.graph.node.insert(0, node)
    onnx.checker.check_model(proto)
    try:
        onnx.save(proto, str(output))
    except OSError as error:
        raise SdflowError(f"cannot write {str(output)!r}: {error.strerror or error}") from None
    relative = [e.relative for e in errors] if calibration else []
    return QuantizeSummary(len(nodes), float_bytes, quantized_bytes,
                           float(np.mean(relative)) if relative else None, notes)


def _opset(proto: onnx.ModelProto) -> int:
    return next((e.version for e in proto.opset_import if e.domain in ("", "ai.onnx")), 1)


def _initializer_names(initializers: dict, results: dict) -> dict[str, str]:
    """IR constant name -> the initializer it came from: the importer names a constant after its initializer (as
    an identifier, maybe with a numeric suffix); the values must be equal too."""
    from sdflow.ir.graph import _identifier
    found = {}
    for ir_name, (_, value) in results.items():
        for onnx_name, init in initializers.items():
            base = _identifier(onnx_name)
            if ir_name != base and not (ir_name.startswith(base + "_") and ir_name[len(base) + 1:].isdigit()):
                continue
            if np.array_equal(numpy_helper.to_array(init), value):
                found[ir_name] = onnx_name
                break
    return found


def _fresh(name: str, taken: set) -> str:
    candidate, counter = name, 0
    while candidate in taken:
        counter += 1
        candidate = f"{name}_{counter}"
    taken.add(candidate)
    return candidate
