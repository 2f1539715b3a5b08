"""The ``sdflow`` command line: compile, run, inspect, passes, view, conformance, bench, report, zoo. Errors print one
line (``--debug`` for the traceback) and exit non-zero."""
from __future__ import annotations

import argparse
import collections
import os
import pathlib
import sys
import traceback

import numpy as np

from sdflow import DEFAULT_PASSES
from sdflow.ir.errors import SdflowError

__all__ = ["main"]


def _progress(message: str) -> None:
    print(f"[sdflow] {message}", file=sys.stderr, flush=True)


def _parse_pairs(items, what: str) -> dict[str, str]:
    pairs = {}
    for item in items or []:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise SdflowError(f"{what} {item!r} must look like NAME=VALUE")
        pairs[name] = value
    return pairs


def cmd_compile(args) -> int:
    from sdflow import api
    out = pathlib.Path(args.output) if args.output else None
    dump = pathlib.Path(args.dump_dir) if args.dump_dir else (out / "passes" if out else None)
    compiled = api.compile(args.model, passes=args.passes, target=args.target, dump_dir=dump, progress=True,
                           fallback=args.fallback, options=args.option, calibration=args.calibration)
    if isinstance(compiled, api.PartitionedModel):
        print(f"compiled {compiled.model.graph.name} in {len(compiled.parts)} parts")
        if compiled.host_nodes:
            print(f"sdflow's dynamic-shape kernels run {len(compiled.host_nodes)} node(s) between them:")
            for label in compiled.host_nodes:
                print(f"  {label}")
        if compiled.fallback_nodes:
            print(f"ONNX Runtime runs {len(compiled.fallback_nodes)} node(s) sdflow has no op for:")
            for label in compiled.fallback_nodes:
                print(f"  {label}")
        return 0
    if out:
        compiled.graph.save(out / "model.sdfg")
    print(f"compiled {compiled.graph.name}: {len(compiled.graph.op_nodes())} ops after {args.passes}")
    for record in compiled.pass_records:
        stats = ", ".join(f"{k}={v}" for k, v in record.result.stats.items())
        print(f"  {record.name:<24} {'modified' if record.result.modified else 'unchanged':<9} "
              f"{record.seconds * 1e3:7.1f} ms  {stats}")
    print(f"  inputs:  {', '.join(f'{n}: {t}' for n, t in compiled.input_types.items())}")
    print(f"  outputs: {', '.join(f'{n}: {t}' for n, t in compiled.output_types.items())}")
    if compiled.graph_from_cache:
        print("  optimised graph: from the graph cache (the pass times are those of the run that stored it)")
    how = f"built in {compiled.build_seconds:.1f} s" if compiled.built else "loaded from cache"
    print(f"  native build: {compiled.build_folder} ({how})")
    if dump:
        print(f"  IR after each pass: {dump}/NN-<pass>.sdfg")
    if out:
        print(f"  final IR: {out / 'model.sdfg'}")
    return 0


def _inputs_for(compiled, args) -> dict[str, np.ndarray]:
    from sdflow.feeds import concrete_shape, random_input
    files = _parse_pairs(args.input, "--input")
    dims = {k: int(v) for k, v in _parse_pairs(args.dim, "--dim").items()}
    rng = np.random.default_rng(args.seed)
    feeds = {}
    for name, ttype in compiled.input_types.items():
        if name in files:
            try:
                feeds[name] = np.load(files[name], allow_pickle=False)
            except (OSError, ValueError) as error:
                raise SdflowError(f"--input {name}: cannot read {files[name]}: {error}") from None
        elif args.random:
            shape = concrete_shape(name, ttype, dims, "give its size with --dim SYMBOL=N")
            feeds[name] = random_input(rng, name, ttype, shape)
    unknown = set(files) - set(compiled.input_types)
    if unknown:
        raise SdflowError(f"unknown input(s) {sorted(unknown)}; the model's inputs are {list(compiled.input_types)}")
    return feeds


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive integer")
    return value


def cmd_run(args) -> int:
    from sdflow import api
    from sdflow.ort import compare_outputs, run_onnxruntime
    compiled = api.compile(args.model, passes=args.passes, progress=True, instrument=bool(args.profile),
                           fallback=args.fallback, threads=args.threads, options=args.option,
                           calibration=args.calibration)
    feeds = _inputs_for(compiled, args)
    outputs = compiled(**feeds)
    out_dir = pathlib.Path(args.output_dir) if args.output_dir else None
    for name, array in outputs.as_dict().items():
        summary = f"min {array.min():.6g}, max {array.max():.6g}, mean {array.mean():.6g}" if array.size else "empty"
        print(f"{name}: {array.dtype}{list(array.shape)}  {summary}")
        if out_dir:
            out_dir.mkdir(parents=True, exist_ok=True)
            np.save(out_dir / f"{name}.npy", array)
    if args.profile:
        _write_profile(compiled, feeds, pathlib.Path(args.profile), args.runs, args.model)
    if not args.compare_ort:
        return 0
    reference = run_onnxruntime(args.model, feeds)
    comparisons = compare_outputs(outputs.as_dict(), reference)
    print("comparison with ONNX Runtime (tolerance 1e-4 x max(1, |ref|)):")
    for comparison in comparisons:
        print("  " + str(comparison))
    return 0 if all(c.ok for c in comparisons) else 1


def _write_profile(compiled, feeds, folder: pathlib.Path, runs: int, model: str) -> None:
    import json
    import shutil
    from sdflow.codegen.runtime import op_milliseconds
    report = compiled.profile_report(**feeds, runs=runs)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "report.json").write_text(json.dumps(report))
    shutil.copyfile(compiled.program_sdfg, folder / "program.sdfgz")
    times = sorted(op_milliseconds(report).items(), key=lambda item: -item[1])
    print(f"profile of {runs} runs (median per op), slowest first:")
    for label, ms in times[:10]:
        print(f"  {ms:9.3f} ms  {label}")
    print(f"  report: {folder / 'report.json'} (load it onto {folder / 'program.sdfgz'} in DaCe's viewers,")
    print(f"          or colour the op graph: sdflow view {model} --profile {folder / 'report.json'})")


def cmd_inspect(args) -> int:
    from sdflow.frontends.onnx import load_model, unsupported_element_types, unsupported_nodes
    from sdflow.frontends.onnx.loader import default_opset
    model = load_model(args.model)
    graph = model.graph
    print(f"model: {graph.name or '(unnamed)'}  producer: {model.producer_name or '?'} {model.producer_version}  "
          f"opset: {default_opset(model)}")
    initializers = {i.name for i in graph.initializer}
    for value in graph.input:
        if value.name not in initializers:
            print(f"input  {value.name}: {_value_type(value)}")
    for value in graph.output:
        print(f"output {value.name}: {_value_type(value)}")
    import onnx.numpy_helper
    sizes = [onnx.numpy_helper.to_array(i) for i in graph.initializer]
    print(f"parameters: {sum(a.size for a in sizes):,} in {len(sizes)} tensors "
          f"({sum(a.nbytes for a in sizes) / 2**20:.2f} MiB)")
    counts = collections.Counter((n.domain or "ai.onnx", n.op_type) for n in graph.node)
    print(f"ops: {sum(counts.values())} nodes, {len(counts)} op types")
    from sdflow.fallback import host_node_indices
    host = host_node_indices(model)
    missing = unsupported_nodes(model, skip=host)
    missing_types = {(d or "ai.onnx", t) for d, t, _ in missing}
    host_types = {(graph.node[i].domain or "ai.onnx", graph.node[i].op_type) for i in host}
    for (domain, op_type), count in counts.most_common():
        mark = "  UNSUPPORTED" if (domain, op_type) in missing_types else (
            "  (run between compiled parts)" if (domain, op_type) in host_types else "")
        print(f"  {count:5d}  {op_type}{'' if domain == 'ai.onnx' else f' ({domain})'}{mark}")
    if missing:
        print(f"unsupported: {len(missing)} op type(s):")
        for (domain, op_type, opset), names in sorted(missing.items()):
            print(f"  {domain or 'ai.onnx'}::{op_type} (opset {opset}): {', '.join(names[:8])}"
                  f"{' ...' if len(names) > 8 else ''}")
        print(f"  with --fallback reference, ONNX Runtime runs these {sum(map(len, missing.values()))} node(s) "
              "and sdflow compiles the rest")
    if host:
        print(f"data-dependent output shapes: {len(host)} node(s) run by sdflow's own kernels between compiled "
              f"parts: {', '.join(graph.node[i].name or graph.node[i].op_type for i in host[:8])}"
              f"{' ...' if len(host) > 8 else ''}")
    bad_types = unsupported_element_types(model)
    for type_name, tensors in sorted(bad_types.items()):
        print(f"unsupported element type {type_name}: {', '.join(tensors[:8])}{' ...' if len(tensors) > 8 else ''}")
    if not missing and not bad_types:
        print("unsupported: none (every node has an sdflow op, every tensor a supported element type)")
    if args.ir and not missing and not bad_types:
        from sdflow import api
        from sdflow.ir import print_graph
        graph_ir = api.optimize(api.load(args.model), args.passes)
        print(print_graph(graph_ir), end="")
    return 0


def _value_type(value) -> str:
    tensor = value.type.tensor_type
    import onnx
    dims = [str(d.dim_value) if d.HasField("dim_value") else (d.dim_param or "?") for d in tensor.shape.dim]
    return f"{onnx.TensorProto.DataType.Name(tensor.elem_type).lower()}[{','.join(dims)}]"


def cmd_passes(args) -> int:
    from sdflow.passes import LEVELS, available_passes
    for name, cls in available_passes().items():
        print(f"{name:<24} {cls.summary()}")
        for field in cls.options():
            print(f"{'':<26}{field.name}: {getattr(field.type, '__name__', field.type)} = {field.default!r}")
    print("levels:")
    for level, names in LEVELS.items():
        print(f"  {level}: {', '.join(names) or '(no passes)'}")
    return 0


def cmd_view(args) -> int:
    from sdflow import viewer
    dims = {k: int(v) for k, v in _parse_pairs(args.dim, "--dim").items()}
    path = viewer.write_view(args.source, args.output, passes=args.passes, dims=dims, profile_path=args.profile)
    print(f"wrote {path} ({path.stat().st_size / 2**20:.1f} MiB, self-contained)")
    if args.open:
        import webbrowser
        webbrowser.open(path.resolve().as_uri())
    return 0


def cmd_conformance(args) -> int:
    from sdflow import conformance
    cases = conformance.load_cases(args.k)
    ops = conformance.case_ops(cases)
    if args.slice:
        ops = {name: ops[name] for name in conformance.representative_slice(cases)}
    if not ops:
        raise SdflowError(f"no ONNX node test case matches {args.k!r}")

    def progress(result, done, total):
        _progress(f"{done}/{total} {result.status:<14} {result.name} ({result.seconds:.1f} s)")

    results = conformance.run_cases(ops, args.k, jobs=args.jobs, timeout=args.timeout, progress=progress)
    print(conformance.format_summary(results))
    if args.json:
        conformance.write_json(results, args.json)
    if args.markdown:
        command = "sdflow conformance " + " ".join(sys.argv[2:]) if sys.argv[1:2] == ["conformance"] else \
            "sdflow conformance"
        pathlib.Path(args.markdown).write_text(conformance.format_markdown(results, command))
    return 1 if any(r.status == "wrong result" for r in results) else 0


def cmd_bench(args) -> int:
    from sdflow import bench
    bench.pin_threads(args.threads)  # before anything loads OpenMP or OpenBLAS
    result = bench.benchmark(args.model, bench.parse_shapes(args.shape), threads=args.threads, runs=args.runs,
                             passes=args.passes, reduced=args.reduced, progress=_progress, options=args.option)
    print(bench.format_result(result))
    if args.json:
        import dataclasses
        import json
        pathlib.Path(args.json).write_text(json.dumps(dataclasses.asdict(result), indent=1))
    return 0 if result.outputs_match else 1


def cmd_report(args) -> int:
    from sdflow import api, bench, report, zoo
    path = zoo.resolve(args.model, args.reduced)
    graph = api.load(path)
    dims = {k: int(v) for k, v in _parse_pairs(args.dim, "--dim").items()}
    if args.model in zoo.ENTRIES and not args.shape and not dims:
        dims = dict(zoo.ENTRIES[args.model].default_dims)
    dims = report.dims_from_shapes(graph, bench.parse_shapes(args.shape), dims)
    result = report.build_report(graph, args.passes, dims, model=args.model, explain=args.explain,
                                 lowered=args.lowered, calibration=args.calibration)
    text = report.render(result, args.format, top=args.top)
    if args.output:
        pathlib.Path(args.output).write_text(text)
        print(f"wrote {args.output}: {report.format_text(result).splitlines()[0]}")
    else:
        sys.stdout.write(text)
    return 0


def cmd_zoo(args) -> int:
    from sdflow import zoo
    return zoo.run(args)


def cmd_corpus(args) -> int:
    from sdflow import corpus
    return corpus.run(args)


def cmd_quantize(args) -> int:
    from sdflow import api
    from sdflow.quantize import quantize_onnx
    summary = quantize_onnx(args.model, args.passes, args.output, api.calibration_feeds(args.calibration))
    print(f"wrote {args.output}: {summary.weights} weight(s) quantized, {summary.float_bytes / 2**20:.2f} MiB of "
          f"float32 -> {summary.quantized_bytes / 2**20:.2f} MiB")
    if summary.mean_relative_error is not None:
        print(f"mean relative reconstruction error on the calibration inputs: {summary.mean_relative_error:.3g}")
    for note in summary.notes:
        print(f"  {note}")
    return 0


def _add_passes_option(parser, default: str = DEFAULT_PASSES, what: str = "", calibration: bool = False) -> None:
    parser.add_argument("-p", "--passes", default=default, metavar="PIPELINE",
                        help=f"pass pipeline, e.g. O1 or 'fold-constants,eliminate-dead-nodes' "
                        f"(default: {what or default})")
    if calibration:
        parser.add_argument("--calibration", metavar="FILE.npz",
                            help="example inputs for passes that measure activations (quantize-weights{method="
                            "gptq}): one array per input name, one feed per index of its first axis")


def _add_kernel_options(parser) -> None:
    parser.add_argument("--option", action="append", metavar="NAME=VALUE",
                        help="a kernel choice (repeat per option): direct_conv, winograd, channel_vectors, "
                        "depthwise_rows, depthwise_channels, memory_reuse = true|false; gemm = packed|blas")


def _add_fallback_option(parser) -> None:
    parser.add_argument("--fallback", choices=["error", "reference"], default="error",
                        help="reference: ONNX Runtime runs the nodes sdflow has no op for (named in the output)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sdflow", description="ONNX -> DaCe SDFG compiler")
    parser.add_argument("--debug", action="store_true", help="show the traceback on errors")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("compile", help="compile a model (and dump the IR after every pass with -o)")
    p.add_argument("model")
    _add_passes_option(p, calibration=True)
    p.add_argument("-o", "--output", help="write model.sdfg and passes/NN-<pass>.sdfg here")
    p.add_argument("--dump-dir", help="write the IR after every pass here (NN-<pass>.sdfg); overrides -o's")
    p.add_argument("--target", default="cpu")
    _add_fallback_option(p)
    _add_kernel_options(p)
    p.set_defaults(func=cmd_compile)

    p = sub.add_parser("run", help="compile and run a model on .npy inputs")
    p.add_argument("model")
    p.add_argument("--input", action="append", metavar="NAME=FILE.npy", help="an input (repeat per input)")
    p.add_argument("--random", action="store_true", help="random values for inputs not given with --input")
    p.add_argument("--dim", action="append", metavar="SYMBOL=N", help="size of a symbolic dim for --random")
    p.add_argument("--seed", type=int, default=0)
    _add_passes_option(p, calibration=True)
    p.add_argument("--compare-ort", action="store_true", help="also run ONNX Runtime and compare")
    p.add_argument("--output-dir", help="save each output as NAME.npy here")
    p.add_argument("--profile", metavar="DIR", help="build with DaCe's per-op timers and write DIR/report.json "
                   "(a trace DaCe's viewers load) and DIR/program.sdfgz (the graph it times)")
    p.add_argument("--runs", type=int, default=10, help="calls timed by --profile")
    p.add_argument("--threads", type=_positive_int, metavar="N",
                   help="at most N threads per call (default: OMP_NUM_THREADS, else every core this process may use)")
    _add_fallback_option(p)
    _add_kernel_options(p)
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("view", help="write one self-contained HTML page with the graph after every pass")
    p.add_argument("source", help="an ONNX model, a .sdfg file, or a folder written by --dump-dir")
    _add_passes_option(p, default=None, what=f"{DEFAULT_PASSES} for a model, none for a .sdfg")
    p.add_argument("-o", "--output", help="the HTML file (default: SOURCE.html; DIR/passes.html for a folder)")
    p.add_argument("--open", action="store_true", help="open the page in the default browser")
    p.add_argument("--profile", metavar="REPORT", help="a report.json of `sdflow run --profile`: colour by time")
    p.add_argument("--dim", action="append", metavar="SYMBOL=N",
                   help="size of a symbolic dim for the bytes-moved overlay (default 1)")
    p.set_defaults(func=cmd_view)

    p = sub.add_parser("inspect", help="op counts, parameters, inputs/outputs, unsupported ops")
    p.add_argument("model")
    p.add_argument("--ir", action="store_true", help="also print the IR after the pipeline")
    _add_passes_option(p)
    p.set_defaults(func=cmd_inspect)

    p = sub.add_parser("passes", help="list every pass with its one-line doc and options")
    p.set_defaults(func=cmd_passes)

    p = sub.add_parser("conformance", help="run the ONNX backend node tests compiled by sdflow")
    p.add_argument("-k", metavar="PATTERN", help="only cases whose name matches this regular expression")
    p.add_argument("--slice", action="store_true", help="the CI slice: one case per supported op")
    p.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="worker processes (default: all cores)")
    p.add_argument("--timeout", type=float, default=600.0, help="seconds per case before it counts as failed")
    p.add_argument("--json", metavar="FILE", help="one record per case")
    p.add_argument("--markdown", metavar="FILE", help="the summary and per-op table (docs/conformance.md)")
    p.set_defaults(func=cmd_conformance)

    p = sub.add_parser("bench", help="latency against ONNX Runtime, compile times, memory, slowest ops")
    p.add_argument("model", help="an ONNX file or a zoo name (resnet18, mobilenet_v2, bert, gpt2, minilm)")
    p.add_argument("--shape", action="append", metavar="NAME=D0,D1,...", help="an input's shape")
    p.add_argument("--threads", type=_positive_int, default=2, help="threads of both runtimes (default 2)")
    p.add_argument("--runs", type=int, default=20)
    _add_passes_option(p)
    p.add_argument("--reduced", action="store_true", help="zoo models: the 2-layer variants")
    p.add_argument("--json", help="also write the result as JSON here")
    _add_kernel_options(p)
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser("report", help="bytes moved per op and per pass (operator boundaries, and after lowering)")
    p.add_argument("model", help="an ONNX file, a .sdfg file or a zoo name (resnet18, mobilenet_v2, bert, ...)")
    _add_passes_option(p, default="O2", calibration=True)
    p.add_argument("--shape", action="append", metavar="NAME=D0,D1,...", help="an input's shape (binds its dims)")
    p.add_argument("--dim", action="append", metavar="SYMBOL=N", help="size of a symbolic dim")
    p.add_argument("--format", choices=["text", "md", "json", "html"], default="text")
    p.add_argument("--explain", action="store_true", help="say why each declined fusion candidate was declined")
    p.add_argument("--lowered", action="store_true", help="also measure DaCe memlets after lowering (slower)")
    p.add_argument("--top", type=int, default=15, help="how many ops to list")
    p.add_argument("--reduced", action="store_true", help="zoo models: the 2-layer variants")
    p.add_argument("-o", "--output", help="write the report here instead of standard output")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("zoo", help="export the real-model zoo to ONNX (needs the 'models' extra)")
    from sdflow import zoo
    zoo.add_arguments(p)
    p.set_defaults(func=cmd_zoo)

    p = sub.add_parser("quantize", help="write an ONNX model with the weights of quantization passes "
                       "(blocked DequantizeLinear, opset 21)")
    p.add_argument("model", help="the ONNX model to quantize")
    p.add_argument("-o", "--output", required=True, help="the quantized ONNX file to write")
    _add_passes_option(p, default="quantize-weights", calibration=True)
    p.set_defaults(func=cmd_quantize)

    p = sub.add_parser("corpus", help="compile the model corpus (100+ architectures) and compare with ONNX Runtime")
    from sdflow import corpus
    corpus.add_arguments(p)
    p.set_defaults(func=cmd_corpus)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except SdflowError as error:
        if args.debug:
            traceback.print_exc()
        print(f"sdflow: error: {error}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # output piped into `head` and friends
        return 0
    except KeyboardInterrupt:
        print("sdflow: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
