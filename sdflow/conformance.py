"""``sdflow conformance``: the ONNX backend node tests (built in memory by onnx's loader), each compiled by sdflow
in a worker process and compared with the expected outputs (rtol/atol of the case, 1e-3/1e-7 by default; integer
and bool outputs exact). Every case lands in exactly one class. A worker that crashes or exceeds the time limit
costs only its case: it is replaced and the case is recorded as a runtime (or compile) error."""
from __future__ import annotations

import collections
import dataclasses
import json
import multiprocessing
import multiprocessing.connection
import os
import re
import time

from sdflow.ir.errors import SdflowError

__all__ = ["CaseResult", "STATUSES", "load_cases", "case_ops", "run_case", "run_cases", "representative_slice",
           "format_summary", "format_markdown", "write_json"]

STATUSES = ("pass", "wrong result", "compile error", "runtime error", "unsupported op", "excluded")


@dataclasses.dataclass
class CaseResult:
    name: str
    op: str  # the op type the case tests ("A+B" for a case of several ops that is no expanded twin)
    status: str
    detail: str = ""
    seconds: float = 0.0


def load_cases(pattern: str | None = None) -> list:
    """The node test cases (``onnx.backend.test.case.test_case.TestCase``) whose name matches ``pattern``."""
    from onnx.backend.test.loader import load_node_model_tests
    cases = sorted(load_node_model_tests(), key=lambda c: c.name)
    return [c for c in cases if pattern is None or re.search(pattern, c.name)]


def case_ops(cases) -> dict[str, str]:
    """Case name -> the op it tests: the op of a one-node model; for an ``_expanded`` case (the op's function
    body), the op of its unexpanded twin."""
    ops = {}
    for case in cases:
        types = list(dict.fromkeys(n.op_type for n in case.model.graph.node))
        ops[case.name] = types[0] if len(types) == 1 else "+".join(sorted(types))
    for name in ops:
        twin = re.sub(r"_expanded(_ver\d+)?$", "", name)
        if twin != name and twin in ops:
            ops[name] = ops[twin]
    return ops


def representative_slice(cases) -> list[str]:
    """The fixed CI slice: for every op sdflow supports, the first case (by name) that tests it and counts."""
    from sdflow.conformance_exclusions import exclusion_reason
    from sdflow.ir import registered_ops
    supported = {spec.op_type for spec in registered_ops() if spec.domain == ""}
    ops = case_ops(cases)
    chosen = {}
    for case in cases:
        op = ops[case.name]
        if op in supported and op not in chosen and exclusion_reason(case.name, case.model) is None:
            chosen[op] = case.name
    return sorted(chosen.values())


def run_case(case, op: str, stage=lambda s: None) -> CaseResult:
    """Compiles and runs one case in this process and classifies it."""
    import numpy as np

    import sdflow
    from sdflow.conformance_exclusions import exclusion_reason
    start = time.perf_counter()

    def result(status, detail=""):
        return CaseResult(case.name, op, status, detail, round(time.perf_counter() - start, 3))

    reason = exclusion_reason(case.name, case.model)
    if reason:
        return result("excluded", reason)
    data_sets = [([_array(v) for v in inputs], [_array(v) for v in outputs]) for inputs, outputs in case.data_sets]
    stage("compile")
    try:
        # Shape-like inputs given as graph inputs (a Reshape's shape, ...) are compiled in as their values.
        compiled = sdflow.compile(case.model, value_inputs="specialize")
        builds = [compiled.build_for(*inputs) if isinstance(compiled, sdflow.ValueSpecializedModel)
                  else (compiled, dict(zip(compiled.input_names, inputs))) for inputs, _ in data_sets]
    except sdflow.UnsupportedOpError as error:
        return result("unsupported op", str(error))
    except Exception as error:  # noqa: BLE001  (any failure to compile is this case's compile error)
        return result("compile error", f"{type(error).__name__}: {error}")
    stage("run")
    for (build, inputs), (_, expected) in zip(builds, data_sets):
        try:
            outputs = build(**inputs)
        except Exception as error:  # noqa: BLE001
            return result("runtime error", f"{type(error).__name__}: {error}")
        mismatch = _mismatch(outputs, expected, case.rtol, case.atol, np)
        if mismatch:
            return result("wrong result", mismatch)
    return result("pass")


def _array(value):
    """Test data as numpy: some cases store TensorProtos (float16, ...)."""
    import onnx
    return onnx.numpy_helper.to_array(value) if isinstance(value, onnx.TensorProto) else value


BFLOAT16_RTOL = 2.0 ** -6  # two units in the last place of bfloat16 (8 significant bits)


def _mismatch(outputs, expected, rtol, atol, np) -> str:
    if len(outputs) != len(expected):
        return f"{len(outputs)} outputs, expected {len(expected)}"
    for index, (got, want) in enumerate(zip(outputs, expected)):
        want = np.asarray(want)
        if got.shape != want.shape or got.dtype != want.dtype:
            return f"output {index}: {got.dtype}{list(got.shape)}, expected {want.dtype}{list(want.shape)}"
        if want.dtype.name == "bfloat16":
            # Two bfloat16 rounding steps: ONNX's reference runs MatMul on bfloat16 arrays in float32 (numpy with
            # ml_dtypes returns float32), so its expected values skip roundings that the ops' bfloat16 outputs
            # require; each side is about one step from the same graph computed in float32 (docs/conformance.md).
            rtol = max(rtol, BFLOAT16_RTOL)
        if want.dtype.kind == "V":  # ml_dtypes (bfloat16, float8, int4, ...): compared by value
            integer = want.dtype.name.startswith(("int", "uint"))
            got, want = got.astype(np.float64), want.astype(np.float64)
            if integer:
                got, want = got.astype(np.int64), want.astype(np.int64)
        if want.dtype.kind in "biuU":
            if not np.array_equal(got, want):
                return f"output {index}: {int(np.sum(got != want))} of {want.size} elements differ"
        elif not np.allclose(got, want, rtol=rtol, atol=atol, equal_nan=True):
            error = np.nanmax(np.abs(got.astype(np.float64) - want.astype(np.float64)))
            return f"output {index}: max abs error {error:.3g} (rtol {rtol}, atol {atol})"
    return ""


def _worker(connection, pattern):
    """A worker process: loads the cases once, then runs the names it receives."""
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)  # DaCe's and the compiler's chatter; results travel through the pipe
    cases = {c.name: c for c in load_cases(pattern)}
    ops = case_ops(cases.values())
    connection.send(("ready", None))
    while True:
        name = connection.recv()
        if name is None:
            return
        case_result = run_case(cases[name], ops[name], stage=lambda s: connection.send(("stage", s)))
        connection.send(("done", dataclasses.asdict(case_result)))


def run_cases(ops: dict[str, str], pattern: str | None = None, jobs: int = 2, timeout: float = 600.0,
              progress=None) -> list[CaseResult]:
    """Runs the cases named in ``ops`` (name -> op, see ``case_ops``; each matches ``pattern``) in ``jobs``
    worker processes; ``progress(result, done, total)`` hears each finished case."""
    names = list(ops)
    context = multiprocessing.get_context("spawn")  # a clean process: no inherited OpenMP or DaCe state
    pending = collections.deque(names)
    results: dict[str, CaseResult] = {}
    workers = {}  # connection -> [process, case name or None, stage, start time]

    def start_worker():
        parent, child = context.Pipe()
        process = context.Process(target=_worker, args=(child, pattern), daemon=True)
        process.start()
        workers[parent] = [process, None, "starting", time.monotonic()]

    def finish(connection, case_result):
        workers[connection][1] = None
        results[case_result.name] = case_result
        if progress:
            progress(case_result, len(results), len(names))

    failed_starts = []

    def fail(connection, why):
        process, name, stage, started = workers.pop(connection)
        process.kill()
        if name is None:
            failed_starts.append(why)
            if len(failed_starts) >= 3:  # a broken installation, not a case: do not restart forever
                raise SdflowError(f"conformance workers die before running a case ({why}); check that "
                                  "`python -c 'import sdflow.conformance'` works")
        if name is not None:
            status = "compile error" if stage == "compile" else "runtime error"
            finish_case = CaseResult(name, ops[name], status, f"{why} during {stage}",
                                     round(time.monotonic() - started, 3))
            results[name] = finish_case
            if progress:
                progress(finish_case, len(results), len(names))
        if pending or any(w[1] for w in workers.values()):
            start_worker()

    for _ in range(max(1, min(jobs, len(names)))):
        start_worker()
    while len(results) < len(names):
        for connection in multiprocessing.connection.wait(list(workers), timeout=1.0):
            try:
                kind, payload = connection.recv()
            except (EOFError, OSError):
                fail(connection, f"worker crashed (exit code {workers[connection][0].exitcode})")
                continue
            if kind == "stage":
                workers[connection][2] = payload
                continue
            if kind == "done":
                finish(connection, CaseResult(**payload))
            if pending:
                name = pending.popleft()
                workers[connection][1:] = [name, "starting", time.monotonic()]
                connection.send(name)
        for connection, (process, name, _, started) in list(workers.items()):
            if name is not None and time.monotonic() - started > timeout:
                fail(connection, f"timed out after {timeout:.0f} s")
    for connection, (process, _, _, _) in workers.items():
        connection.send(None)
        process.join(timeout=10)
    return [results[name] for name in names]


def _counts(results) -> tuple[collections.Counter, dict[str, collections.Counter]]:
    totals = collections.Counter(r.status for r in results)
    per_op: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    for r in results:
        per_op[r.op][r.status] += 1
    return totals, per_op


def format_summary(results) -> str:
    totals, per_op = _counts(results)
    lines = [f"{len(results)} cases: " + ", ".join(f"{totals[s]} {s}" for s in STATUSES),
             f"pass rate: {100 * totals['pass'] / max(1, len(results)):.1f}% (excluded cases count as not passing)"]
    wrong = [r for r in results if r.status == "wrong result"]
    if wrong:
        lines.append("wrong results:")
        lines += [f"  {r.name}: {r.detail}" for r in wrong]
    partial = sorted(op for op, c in per_op.items() if c["pass"] and c["pass"] < sum(c.values()))
    if partial:
        lines.append("ops with failing cases: " + ", ".join(
            f"{op} ({per_op[op]['pass']}/{sum(per_op[op].values())})" for op in partial))
    return "\n".join(lines)


def format_markdown(results, command: str) -> str:
    import onnx
    totals, per_op = _counts(results)
    out = ["# ONNX backend conformance", "",
           f"Produced by `{command}` (onnx {onnx.__version__}: {len(results)} node test cases built in memory by "
           "`onnx.backend.test.loader.load_node_model_tests()`). Do not edit by hand.", "",
           "| class | cases | share |", "|---|---:|---:|"]
    out += [f"| {s} | {totals[s]} | {100 * totals[s] / max(1, len(results)):.1f}% |" for s in STATUSES]
    out += ["", f"**Pass rate: {100 * totals['pass'] / max(1, len(results)):.1f}%** (excluded cases count as not "
            "passing). Tolerances: the case's rtol/atol (ONNX's defaults 1e-3/1e-7); integer and bool outputs (4- and "
            "2-bit ones too) exact, float8/float4 ones by value; bfloat16 outputs within rtol 2^-6 (two bfloat16 "
            "steps: ONNX's reference computes MatMul on bfloat16 arrays in float32, skipping the roundings the ops' "
            "bfloat16 outputs require; sdflow's results are the closer to the same graph run in float32).", ""]
    excluded = collections.Counter(r.detail for r in results if r.status == "excluded")
    if excluded:
        out += ["Excluded (reasons in `sdflow/conformance_exclusions.py`): " + ", ".join(
            f"{reason} {count}" for reason, count in excluded.most_common()) + ".", ""]
    wrong = [r for r in results if r.status == "wrong result"]
    out += ["## Wrong results", ""] + ([f"- `{r.name}` ({r.op}): {r.detail}" for r in wrong] or ["None."]) + [""]
    from sdflow.zoo import REAL_MODEL_OPS
    out += ["## Ops the real models use", "",
            f"The {len(REAL_MODEL_OPS)} op types of the exported ResNet-18, MobileNetV2, BERT, GPT-2 and MiniLM "
            "(`sdflow.zoo.REAL_MODEL_OPS`): their node tests that do not pass, and why.", ""]
    for op in REAL_MODEL_OPS:
        cases = [r for r in results if r.op == op]
        excluded = collections.Counter(r.detail for r in cases if r.status == "excluded")
        line = f"- **{op}**: {sum(r.status == 'pass' for r in cases)} of {len(cases)} pass"
        if excluded:
            line += "; excluded: " + ", ".join(f"{reason} {count}" for reason, count in excluded.most_common())
        out.append(line)
        out += [f"  - `{r.name}`: {r.status} — {_first_line(r.detail)}" for r in cases
                if r.status not in ("pass", "excluded")]
    out += ["", "## Per op", "", "| op | cases | pass | wrong | compile error | runtime error | unsupported | excluded |",
            "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for op in sorted(per_op):
        c = per_op[op]
        out.append(f"| {op} | {sum(c.values())} | " + " | ".join(str(c[s]) for s in STATUSES) + " |")
    return "\n".join(out) + "\n"


def _first_line(text: str, limit: int = 160) -> str:
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line if len(line) <= limit else line[:limit] + " ..."


def write_json(results, path) -> None:
    with open(path, "w") as file:
        json.dump([dataclasses.asdict(r) for r in results], file, indent=1)
