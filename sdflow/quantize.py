"""``sdflow quantize MODEL -o OUT.onnx -p 'quantize-weights{...}'``: the quantization passes' weights written back
into the ONNX model, as ONNX Runtime reads them. Each quantized MatMul weight initializer W becomes initializers
W_q<bits> (uint8 or uint4 codes), W_scales and W_zero_points and a DequantizeLinear (axis 0, block_size = group)
that produces W again, so every node that read W reads the dequantized weight (a Conv weight: DequantizeLinear of
its [C_out, K] matrix along axis 1, then a Reshape to the filter bank); the model is converted to opset 21
(the first with blocked DequantizeLinear) when it is older. Only the weights change: the rest of the graph is the
file's own, not sdflow's optimised graph.

``-p quantize-dynamic-int8{...}`` writes what that pass computes in standard ops instead: each MatMul (and Gemm
with transA = 0, alpha = beta = 1 and a constant row bias) by a constant weight becomes the activations' range
(ReduceMin/ReduceMax over each row, or over the tensor), their uint8 codes (Div, Round half to even, Add, Clip,
Cast), MatMulInteger by the int8 weight, the zero point's share taken out with the weight's column sums, and the
float scaling (Cast, Mul, Mul, Add): the same codes and sums as sdflow's QuantizedMatMul. Each 1-D/2-D Conv by a
constant weight becomes DynamicQuantizeLinear, ConvInteger by the int8 weight, Cast and the scales (opset >= 11),
as the pass rewrites it.

``-p quantize-static-int8{...}`` (with calibration) writes ONNX's QDQ form: each such product's activation through
QuantizeLinear / DequantizeLinear with the scale and zero point the pass calibrates (on sdflow's graph, the same
ranges), the int8 weight behind a DequantizeLinear per column (axis 1), then the MatMul (and the bias's Add)."""
from __future__ import annotations

import dataclasses
import pathlib

import numpy as np
import onnx
from onnx import helper, numpy_helper

from sdflow.frontends.onnx import import_model
from sdflow.ir import ModelLoadError, PipelineError, SdflowError
from sdflow.passes import parse_pipeline
from sdflow.passes.quantization.quantize_dynamic_int8 import (QuantizeDynamicInt8, conv_weight_int8, find_products,
                                                               quantize_weight_int8)
from sdflow.passes.quantization.quantize_static_int8 import QuantizeStaticInt8, calibrate_activations
from sdflow.passes.quantization.quantize_weights import (QuantizeWeights, conv_dequantize_inputs, dequantize_inputs,
                                                          quantize_graph)

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
    int8 = len(pipeline) == 1 and isinstance(pipeline[0], (QuantizeDynamicInt8, QuantizeStaticInt8))
    if not int8 and (not pipeline or not all(isinstance(p, QuantizeWeights) for p in pipeline)):
        names = ", ".join(p.name for p in pipeline) or "none"
        raise PipelineError("sdflow quantize writes quantize-weights passes or one quantize-dynamic-int8 or "
                            f"quantize-static-int8 pass; other passes rewrite the graph itself (got {names})")
    if isinstance(model, (str, pathlib.Path)):
        try:
            proto = onnx.load(str(model))
        except Exception as error:  # a missing file, or bytes that are no ONNX model (protobuf's own errors)
            raise ModelLoadError(f"cannot read ONNX model {str(model)!r}: {error}") from None
    else:
        proto = onnx.ModelProto.FromString(model.SerializeToString())
    if int8:
        graph = import_model(proto)  # (a model sdflow cannot read is an error here too)
        activations = None
        if isinstance(pipeline[0], QuantizeStaticInt8):
            pipeline[0].check_calibration(calibration)
            activations = _static_ranges(graph, pipeline[0], calibration)
        summary = _int8(proto, pipeline[0], activations)
        _save(proto, output)
        return summary
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
    for ir_name, (result, value) in results.items():
        onnx_name = by_ir_name.get(ir_name)
        if onnx_name is None:
            notes.append(f"weight {ir_name} is not an initializer of the file: left as it is")
            continue
        bits = bits_of[ir_name]
        conv = np.ndim(value) > 2  # a Conv's filters: their [C_out, K] matrix, then Reshape
        codes, scales, zeros = (conv_dequantize_inputs if conv else dequantize_inputs)(result, bits)
        names = [_fresh(f"{onnx_name}_{suffix}", taken) for suffix in (f"q{bits}", "scales", "zero_points")]
        proto.graph.initializer.remove(initializers[onnx_name])
        proto.graph.initializer.extend(numpy_helper.from_array(v, n) for v, n in zip((codes, scales, zeros), names))
        if conv:
            rows, shape = _fresh(f"{onnx_name}_rows", taken), _fresh(f"{onnx_name}_shape", taken)
            proto.graph.initializer.append(numpy_helper.from_array(np.array(np.shape(value), np.int64), shape))
            nodes.append(helper.make_node("DequantizeLinear", names, [rows], name=f"dequantize_{onnx_name}",
                                          axis=1, block_size=int(result.group_size)))
            nodes.append(helper.make_node("Reshape", [rows, shape], [onnx_name], name=f"reshape_{onnx_name}"))
        else:
            nodes.append(helper.make_node("DequantizeLinear", names, [onnx_name], name=f"dequantize_{onnx_name}",
                                          axis=0, block_size=int(result.group_size)))
        stored = 8 if bits == 8 else 4  # bits per code and zero point in the file (3-bit codes as uint4)
        float_bytes += codes.size * 4
        quantized_bytes += (codes.size * stored + 7) // 8 + scales.nbytes + (zeros.size * stored + 7) // 8
    for node in reversed(nodes):  # (they read initializers only: first in the node list, in order)
        proto.graph.node.insert(0, node)
    _save(proto, output)
    relative = [e.relative for e in errors] if calibration else []
    return QuantizeSummary(sum(n.op_type == "DequantizeLinear" for n in nodes), float_bytes, quantized_bytes,
                           float(np.mean(relative)) if relative else None, notes)


def _opset(proto: onnx.ModelProto) -> int:
    return next((e.version for e in proto.opset_import if e.domain in ("", "ai.onnx")), 1)


def _initializer_names(initializers: dict, results: dict) -> dict[str, str]:
    """IR constant name -> the initializer it came from: the importer names a constant after its initializer (as
    an identifier, maybe with a numeric suffix); the values must be equal too."""
    found = {}
    for ir_name, (_, value) in results.items():
        for onnx_name, init in initializers.items():
            if not _named_after(ir_name, onnx_name):
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


def _save(proto: onnx.ModelProto, output) -> None:
    onnx.checker.check_model(proto)
    try:
        onnx.save(proto, str(output))
    except OSError as error:
        raise SdflowError(f"cannot write {str(output)!r}: {error.strerror or error}") from None


def _named_after(ir_name: str, onnx_name: str) -> bool:
    """Whether the importer may have named IR tensor ``ir_name`` after ONNX name ``onnx_name`` (as an identifier,
    maybe with a numeric suffix)."""
    from sdflow.ir.graph import _identifier
    base = _identifier(onnx_name)
    return ir_name == base or (ir_name.startswith(base + "_") and ir_name[len(base) + 1:].isdigit())


def _static_ranges(graph, config: QuantizeStaticInt8, calibration) -> dict[str, tuple]:
    """IR name of each product's activation -> (scale, zero point), as the pass finds them on ``graph``."""
    targets = find_products(graph, config.min_elements, [])
    return calibrate_activations(graph, targets, calibration, config.calibrate, config.percentile, [])


def _static_range(activations: dict, onnx_name: str):
    """The calibrated (scale, zero point) of the activation the file names ``onnx_name``, or None."""
    return next((value for ir_name, value in activations.items() if _named_after(ir_name, onnx_name)), None)


def _conv_int8(node, initializers, config, limit: int, fresh, constant, opset: int):
    """A 1-D/2-D Conv by a float32 initializer as quantize-dynamic-int8 rewrites it (DynamicQuantizeLinear,
    ConvInteger, Cast, the scales, the bias): (nodes, float32 weight bytes, int8 bytes), or None to leave it."""
    from onnx import TensorProto
    weight = initializers.get(node.input[1]) if len(node.input) > 1 else None
    bias = initializers.get(node.input[2]) if len(node.input) > 2 and node.input[2] else None
    if weight is None or (len(node.input) > 2 and node.input[2] and bias is None) or opset < 11:
        return None  # (DynamicQuantizeLinear is opset 11)
    w = numpy_helper.to_array(weight)
    if w.dtype != np.float32 or w.ndim not in (3, 4) or w.size < config.min_elements:
        return None
    codes, scales = conv_weight_int8(w, config.per_channel, limit)
    spatial = w.ndim - 2
    x, y = node.input[0], node.output[0]
    t = {h: fresh(f"{y}_{h}") for h in ("x_q", "x_scale", "x_zero", "acc", "acc_float", "multiplier", "product")}
    codes_name = constant(f"{node.input[1]}_int8", codes)
    scales_name = constant(f"{node.input[1]}_int8_scales",
                           scales.reshape([-1] + [1] * spatial) if config.per_channel else scales.reshape(()))
    attributes = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    nodes = [helper.make_node("DynamicQuantizeLinear", [x], [t["x_q"], t["x_scale"], t["x_zero"]]),
             helper.make_node("ConvInteger", [t["x_q"], codes_name, t["x_zero"]], [t["acc"]], **attributes),
             helper.make_node("Cast", [t["acc"]], [t["acc_float"]], to=TensorProto.FLOAT),
             helper.make_node("Mul", [t["x_scale"], scales_name], [t["multiplier"]]),
             helper.make_node("Mul", [t["acc_float"], t["multiplier"]], [t["product"] if bias is not None else y])]
    if bias is not None:
        channels = constant(f"{node.input[2]}_channels",
                            numpy_helper.to_array(bias).astype(np.float32).reshape([-1] + [1] * spatial))
        nodes.append(helper.make_node("Add", [t["product"], channels], [y]))
    return nodes, w.size * 4, codes.size + scales.nbytes


def _int8(proto: onnx.ModelProto, config, activations=None) -> QuantizeSummary:
    """Rewrites ``proto`` in place: see the module's second and third paragraphs."""
    from onnx import TensorProto
    graph = proto.graph
    initializers = {init.name: init for init in graph.initializer}
    taken = set(initializers) | {o for n in graph.node for o in n.output} | {i.name for i in graph.input}
    limit = 64 if config.reduce_range else 127
    opset = _opset(proto)
    nodes, count, float_bytes, quantized_bytes, notes, done = [], 0, 0, 0, [], {}

    def fresh(hint):
        return _fresh(hint, taken)

    def constant(hint, value):
        name = fresh(hint)
        graph.initializer.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def initializers_now(name):
        return next(init for init in graph.initializer if init.name == name)

    def reduce(op_type, x, out):
        if config.per_row:
            if opset >= 18:
                axes = constant("axes_last", np.array([-1], np.int64))
                return helper.make_node(op_type, [x, axes], [out], keepdims=1)
            return helper.make_node(op_type, [x], [out], axes=[-1], keepdims=1)
        return helper.make_node(op_type, [x], [out], keepdims=0)

    for node in list(graph.node):
        if activations is None and node.domain in ("", "ai.onnx") and node.op_type == "Conv":
            rewritten = _conv_int8(node, initializers, config, limit, fresh, constant, opset)
            if rewritten is None:
                nodes.append(node)
                continue
            new_nodes, weight_bytes, code_bytes = rewritten
            nodes += new_nodes
            count, float_bytes, quantized_bytes = count + 1, float_bytes + weight_bytes, quantized_bytes + code_bytes
            done[(node.input[1], "conv")] = None
            continue
        if node.domain not in ("", "ai.onnx") or node.op_type not in ("MatMul", "Gemm") or len(node.input) < 2:
            nodes.append(node)
            continue
        attributes = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        weight = initializers.get(node.input[1])
        bias = initializers.get(node.input[2]) if node.op_type == "Gemm" and len(node.input) > 2 else None
        w = numpy_helper.to_array(weight) if weight is not None else None
        if w is None or w.dtype != np.float32 or w.ndim != 2 or w.size < config.min_elements or (
                node.op_type == "Gemm" and (attributes.get("transA", 0) or attributes.get("alpha", 1.0) != 1.0
                                            or attributes.get("beta", 1.0) != 1.0
                                            or (len(node.input) > 2 and node.input[2] and bias is None))):
            nodes.append(node)
            continue
        static = _static_range(activations, node.input[0]) if activations is not None else None
        if activations is not None and static is None:
            notes.append(f"{node.name or node.output[0]}: no calibrated range for {node.input[0]}, left float32")
            nodes.append(node)
            continue
        w = w.T if attributes.get("transB", 0) else w
        n = w.shape[1]
        key = (node.input[1], bool(attributes.get("transB", 0)))
        if key not in done:
            codes, scales = quantize_weight_int8(w, config.per_channel, limit)
            column_sums = codes.astype(np.int32).sum(axis=0).astype(np.int32)
            done[key] = (constant(f"{node.input[1]}_int8", codes), constant(f"{node.input[1]}_int8_scales", scales),
                         constant(f"{node.input[1]}_int8_colsum", column_sums))
            float_bytes += w.size * 4
            quantized_bytes += codes.size + scales.nbytes
        codes_name, scales_name, colsum_name = done[key]
        x, y = node.input[0], node.output[0]
        if static is not None:  # QDQ: the activation through Quantize/DequantizeLinear, the weight per column
            names = {h: fresh(f"{y}_{h}") for h in ("x_q", "x_dq", "w_dq", "product")}
            a_scale, a_zero = constant(f"{x}_scale", np.float32(static[0])), constant(f"{x}_zero", np.uint8(static[1]))
            w_scales = scales_name if config.per_channel else constant(f"{scales_name}_scalar",
                                                                       np.float32(numpy_helper.to_array(
                                                                           initializers_now(scales_name))[0]))
            nodes += [helper.make_node("QuantizeLinear", [x, a_scale, a_zero], [names["x_q"]]),
                      helper.make_node("DequantizeLinear", [names["x_q"], a_scale, a_zero], [names["x_dq"]]),
                      helper.make_node("DequantizeLinear", [codes_name, w_scales], [names["w_dq"]], axis=1),
                      helper.make_node("MatMul", [names["x_dq"], names["w_dq"]], [names["product"] if bias else y])]
            if bias is not None:
                row = constant(f"{node.input[2]}_row", numpy_helper.to_array(bias).reshape(n).astype(np.float32))
                nodes.append(helper.make_node("Add", [names["product"], row], [y]))
            count += 1
            continue
        t = {h: fresh(f"{y}_{h}") for h in ("min", "max", "lo", "hi", "range", "scale", "zero_scale", "safe",
                                             "neg", "ratio", "zero_round", "zero", "div", "round", "shifted",
                                             "clipped", "codes", "acc", "zero_int", "share", "fixed", "fixed_float",
                                             "multiplier", "product")}
        zero_f, c255, c0 = (constant("zero_f32", np.float32(0)), constant("c255_f32", np.float32(255)),
                            constant("c0_f32", np.float32(0)))
        one = constant("one_f32", np.float32(1))
        nodes += [reduce("ReduceMin", x, t["min"]), reduce("ReduceMax", x, t["max"]),
                  helper.make_node("Min", [t["min"], zero_f], [t["lo"]]),
                  helper.make_node("Max", [t["max"], zero_f], [t["hi"]]),
                  helper.make_node("Sub", [t["hi"], t["lo"]], [t["range"]]),
                  helper.make_node("Div", [t["range"], c255], [t["scale"]]),
                  helper.make_node("Equal", [t["scale"], c0], [t["zero_scale"]]),
                  helper.make_node("Where", [t["zero_scale"], one, t["scale"]], [t["safe"]]),
                  helper.make_node("Neg", [t["lo"]], [t["neg"]]),
                  helper.make_node("Div", [t["neg"], t["safe"]], [t["ratio"]]),
                  helper.make_node("Round", [t["ratio"]], [t["zero_round"]]),
                  helper.make_node("Clip", [t["zero_round"], c0, c255], [t["zero"]]),
                  helper.make_node("Div", [x, t["safe"]], [t["div"]]),
                  helper.make_node("Round", [t["div"]], [t["round"]]),
                  helper.make_node("Add", [t["round"], t["zero"]], [t["shifted"]]),
                  helper.make_node("Clip", [t["shifted"], c0, c255], [t["clipped"]]),
                  helper.make_node("Cast", [t["clipped"]], [t["codes"]], to=TensorProto.UINT8),
                  helper.make_node("MatMulInteger", [t["codes"], codes_name], [t["acc"]]),
                  helper.make_node("Cast", [t["zero"]], [t["zero_int"]], to=TensorProto.INT32),
                  helper.make_node("Mul", [t["zero_int"], colsum_name], [t["share"]]),
                  helper.make_node("Sub", [t["acc"], t["share"]], [t["fixed"]]),
                  helper.make_node("Cast", [t["fixed"]], [t["fixed_float"]], to=TensorProto.FLOAT),
                  helper.make_node("Mul", [t["scale"], scales_name], [t["multiplier"]]),
                  helper.make_node("Mul", [t["fixed_float"], t["multiplier"]], [t["product"] if bias else y])]
        if bias is not None:
            row = constant(f"{node.input[2]}_row", numpy_helper.to_array(bias).reshape(n).astype(np.float32))
            nodes.append(helper.make_node("Add", [t["product"], row], [y]))
        count += 1
    # (a scale of 0 leaves every code 0 and the zero point 0, as DynamicQuantizeLinear defines it)
    del graph.node[:]
    graph.node.extend(nodes)
    used = {i for n in graph.node for i in n.input}
    for init in list(graph.initializer):
        if init.name not in used and init.name not in {o.name for o in graph.output}:
            graph.initializer.remove(init)
    notes.append(f"{count} product(s) by {len(done)} weight(s) rewritten")
    return QuantizeSummary(len(done), float_bytes, quantized_bytes, None, notes)
