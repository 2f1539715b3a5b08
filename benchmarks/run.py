"""Benchmarks every zoo model against ONNX Runtime, one process per model (thread counts and peak memory are
per process), and writes JSON, a Markdown table and a PNG chart.

    python benchmarks/run.py [NAME ...] [--threads 2] [--runs 20] [-p PIPELINE] [--baseline PIPELINE] [--reduced]
                             [--out docs]

Writes OUT/performance.json, OUT/performance.md and OUT/performance.png (default OUT: docs/zoo/; docs/performance.md
holds the corpus-wide figures and quotes these). ``--baseline O0``
also times every model with that pipeline (same backend) and tabulates the pipeline's speedup over it.
"""
from __future__ import annotations

import argparse
import datetime
import json
import pathlib
import platform
import subprocess
import sys
import tempfile

from sdflow import DEFAULT_PASSES  # cheap: the driver loads on first use

ROOT = pathlib.Path(__file__).resolve().parent.parent
MODELS = ("resnet18", "mobilenet_v2", "bert", "gpt2", "minilm")


def run_one(name: str, args, passes: str) -> dict:
    with tempfile.NamedTemporaryFile(suffix=".json") as result_file:
        command = [sys.executable, "-m", "sdflow", "bench", name, "--threads", str(args.threads), "--runs",
                   str(args.runs), "-p", passes, "--json", result_file.name] + (["--reduced"] if args.reduced else [])
        process = subprocess.run(command, capture_output=True, text=True)
        print(process.stdout, end="", flush=True)
        if process.returncode not in (0, 1) or not pathlib.Path(result_file.name).stat().st_size:
            print(process.stderr[-3000:], file=sys.stderr)
            return {"model": name, "error": (process.stderr.strip().splitlines() or ["failed"])[-1]}
        return json.loads(pathlib.Path(result_file.name).read_text())


def markdown(results: list[dict], args, baseline: list[dict] | None = None) -> str:
    title = "reduced-depth variants (CI slice)" if args.reduced else "full models"
    lines = [
        f"# Performance: sdflow vs ONNX Runtime ({title})",
        "",
        f"Produced by `python benchmarks/run.py{' --reduced' if args.reduced else ''} --threads {args.threads}` on "
        f"{datetime.date.today()} ({platform.processor() or platform.machine()}, {args.threads} threads for both, "
        f"ONNX Runtime with ORT_ENABLE_ALL; median of about {args.runs} runs after warm-up, interleaved in blocks of "
        f"5, each after a 0.2 s pause (the other runtime's idle threads spin), whose first run is dropped). "
        f"Pipeline: {args.passes}. Cached compile: a second `sdflow.compile` of the file in the same process, "
        f"served by the graph cache and the build cache.",
        "",
        "| model | input shapes | sdflow ms | onnxruntime ms | ratio | cold compile s | cached compile s "
        "| call overhead ms | peak RSS MiB | outputs |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in results:
        if "error" in r:
            lines.append(f"| {r['model']} | | | | | | | | | FAILED: {r['error']} |")
            continue
        shapes = ", ".join(f"{k} {'x'.join(map(str, v))}" for k, v in r["shapes"].items())
        verdict = "match" if r["outputs_match"] else "MISMATCH"
        lines.append(f"| {r['model']} | {shapes} | {r['sdflow_ms']:.2f} | {r['onnxruntime_ms']:.2f} | "
                     f"{r['ratio']:.2f}x | {r['cold_compile_s']:.1f} | {r['cached_compile_s']:.2f} | "
                     f"{r['call_overhead_ms']:.3f} | {r['sdflow_peak_rss_mib']:.0f} | {verdict} "
                     f"(err {r['max_abs_error']:.1e}) |")
    if baseline:
        lines += ["", f"## {args.passes} against {args.baseline} (same backend, one after the other)", "",
                  f"| model | {args.baseline} ms | {args.passes} ms | speedup | {args.baseline} / onnxruntime |",
                  "|---|---:|---:|---:|---:|"]
        for r, b in zip(results, baseline):
            if "error" not in r and "error" not in b:
                lines.append(f"| {r['model']} | {b['sdflow_ms']:.2f} | {r['sdflow_ms']:.2f} | "
                             f"{b['sdflow_ms'] / r['sdflow_ms']:.2f}x | {b['ratio']:.2f}x |")
    lines += ["", "## Where the time goes (instrumented build, ms per op type)", ""]
    for r in results:
        if "error" not in r:
            parts = ", ".join(f"{k} {v:.2f}" for k, v in list(r["time_by_op_type"].items())[:6])
            lines.append(f"- **{r['model']}**: {parts}")
    lines += ["", "![sdflow / onnxruntime latency ratio](performance.png)", ""]
    return "\n".join(lines)


def chart(results: list[dict], path: pathlib.Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    done = [r for r in results if "error" not in r]
    figure, axis = plt.subplots(figsize=(7, 3.5))
    axis.bar([r["model"] for r in done], [r["ratio"] for r in done], color="#4c72b0")
    axis.axhline(1.0, color="black", linewidth=0.8)
    axis.set_ylabel("latency / ONNX Runtime (lower is better)")
    axis.set_title("sdflow vs ONNX Runtime, batch 1")
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", default=list(MODELS))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("-p", "--passes", default=DEFAULT_PASSES, help=f"pipeline (default {DEFAULT_PASSES})")
    parser.add_argument("--baseline", help="also time this pipeline (e.g. O0) and tabulate the speedup")
    parser.add_argument("--reduced", action="store_true")
    parser.add_argument("--out", type=pathlib.Path, default=ROOT / "docs" / "zoo")
    args = parser.parse_args(argv)
    results = [run_one(name, args, args.passes) for name in args.names]
    baseline = [run_one(name, args, args.baseline) for name in args.names] if args.baseline else None
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "performance.json").write_text(json.dumps({"pipeline": args.passes, "results": results,
                                                           "baseline": args.baseline, "baseline_results": baseline},
                                                          indent=1))
    (args.out / "performance.md").write_text(markdown(results, args, baseline))
    chart(results, args.out / "performance.png")
    print(f"wrote {args.out / 'performance.md'}")
    return 0 if all("error" not in r and r["outputs_match"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
