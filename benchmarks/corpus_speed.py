"""Speed over the model corpus, from the JSON of a corpus run (``sdflow corpus -k PATTERN --json FILE``): one
Markdown row per passing model (sdflow ms, ONNX Runtime ms, ratio), the geometric mean of the ratios overall and per
family (the part of the name before '/'), the models above 1.5x, and a one-line summary.

    python benchmarks/corpus_speed.py build/perf17.json [--exclude PATTERN ...]

The corpus times each model once, in its own process (10 warm-up calls, the median of 10 timed calls per runtime,
0.2 s apart): one run is noisy at the 10% level; the figures in docs/performance.md say which runs they come from.
"""
from __future__ import annotations

import argparse
import fnmatch
import json
import math
import sys


def geomean(values) -> float:
    values = list(values)
    return math.exp(sum(math.log(v) for v in values) / len(values)) if values else float("nan")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("json")
    parser.add_argument("--exclude", nargs="*", default=[], metavar="PATTERN")
    args = parser.parse_args()
    rows = [r for r in json.load(open(args.json))
            if r.get("sdflow_ms") and r.get("onnxruntime_ms")
            and not any(fnmatch.fnmatch(r["name"], p) for p in args.exclude)]
    rows.sort(key=lambda r: r["name"])
    print("| model | sdflow ms | ONNX Runtime ms | ratio |\n|---|---:|---:|---:|")
    for r in rows:
        print(f"| {r['name']} | {r['sdflow_ms']:.3f} | {r['onnxruntime_ms']:.3f} | "
              f"{r['sdflow_ms'] / r['onnxruntime_ms']:.2f} |")
    ratios = {r["name"]: r["sdflow_ms"] / r["onnxruntime_ms"] for r in rows}
    families = sorted({name.split("/")[0] for name in ratios})
    print("\n| family | models | geomean ratio | slowest |\n|---|---:|---:|---|")
    for family in families:
        members = {n: v for n, v in ratios.items() if n.startswith(family + "/")}
        worst = max(members, key=members.get)
        print(f"| {family} | {len(members)} | {geomean(members.values()):.2f} | {worst} {members[worst]:.2f} |")
    above = sorted((n for n, v in ratios.items() if v > 1.5), key=lambda n: -ratios[n])
    print(f"\n{len(ratios)} models: geomean {geomean(ratios.values()):.2f}x ONNX Runtime's time, "
          f"{sum(v <= 1.0 for v in ratios.values())} at or below 1.0x, {len(above)} above 1.5x"
          + (": " + ", ".join(f"{n} {ratios[n]:.2f}" for n in above) if above else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
