"""Part 1: MLflow tracking through the platform versus plain MLflow, side by side.

A  stock ``mlflow server`` (its defaults: 4 uvicorn workers, job execution on),
B  plain MLflow (no auth) under uvicorn with TCP_NODELAY, 2 workers — the reference,
C  ``mantik server start --workers 2`` with a real user; the client signs in with
   ``mantik.init_tracking()``.

B and C run at the same time and their repetitions alternate (B, C, B, C, …) so that drift
of the machine hits both alike; A runs alone afterwards. Every workload runs in a fresh
client process. Memory is the summed RSS of a server's process tree.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import procs
from bench.report import Check, Options, PartResult, fmt, median, parse_result

WORKERS = 2  # B and C
ARTIFACT_MB = 200
BATCH_METRICS = 10_000
USERNAME = "bench"
TEMPORARY_PASSWORD = "Bench-Temporary-Pw-1!"
PASSWORD = "Bench-Final-Password-9?"

# Targets.
MAX_C_OVER_B = 1.15
MIN_A_OVER_C = 4.0
MAX_UPLOAD_PEAK_MB = 400.0
MAX_IDLE_MB = 800.0
BUSY_FRACTION = 0.2  # of all CPUs, measured for 1 s before the part
RATIO_CHECKS = [
    ("log_metric", "log_metric per call"),
    ("log_batch", f"log_batch {BATCH_METRICS // 1000}k"),
    ("upload", "upload"),
    ("download", "download"),
]


@dataclass(frozen=True)
class Plan:
    metric_calls: dict[str, int]  # per server key
    metric_runs: dict[str, int]
    runs: int  # log_batch and artifact runs per server
    full_metric_calls: int = 2000


def make_plan(quick: bool) -> Plan:
    if quick:
        return Plan({"A": 100, "B": 300, "C": 300}, {"A": 1, "B": 1, "C": 1}, runs=1)
    # A at 2,000 calls alone takes ≈ 110 s: half of them keep the part within ≈ 6 minutes.
    return Plan({"A": 1000, "B": 2000, "C": 2000}, {"A": 1, "B": 3, "C": 3}, runs=3)


@dataclass
class Target:
    key: str
    label: str
    description: str
    server: procs.Server
    client_env: dict[str, str]
    ready: Callable[[], bool]
    setup: Callable[[Target], None] | None = None  # after the idle measurement
    ready_s: float = 0.0
    idle: procs.Sample | None = None
    results: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    def record(self, workload: str, result: dict[str, Any]) -> None:
        self.results.setdefault(workload, []).append(result)

    def median_of(self, workload: str, key: str) -> float | None:
        values = [r[key] for r in self.results.get(workload, [])]
        return median(values) if values else None


# -- environment --------------------------------------------------------------------------


def venv_script(name: str) -> str:
    script = Path(sys.executable).parent / name
    return str(script) if script.exists() else name


# -- servers ------------------------------------------------------------------------------


def _http_ok(url: str, accept: tuple[int, ...] = (200,)) -> Callable[[], bool]:
    return lambda: procs.http_status(url) in accept


def _mlflow_ready(base: str) -> Callable[[], bool]:
    health, version = _http_ok(f"{base}/health"), _http_ok(f"{base}/version", (200, 401))
    return lambda: health() and version()


def _platform_ready(base: str) -> Callable[[], bool]:
    health = _http_ok(f"{base}/api/mantik/health")
    version = _http_ok(f"{base}/version", (200, 401))
    return lambda: health() and version()


@contextlib.contextmanager
def _launched(
    key: str,
    label: str,
    description: str,
    command: list[str],
    root: Path,
    ready: Callable[[str], Callable[[], bool]],
    url: str,
    server_env: dict[str, str] | None = None,
    setup: Callable[[Target], None] | None = None,
) -> Iterator[Target]:
    """Start a server (without waiting for it); it is stopped when the block ends."""
    workdir = root / key
    workdir.mkdir(parents=True, exist_ok=True)
    env = {**procs.clean_env(workdir / "home"), **(server_env or {})}
    with procs.running(
        key, command, env=env, url=url, log_path=workdir / "server.log", cwd=workdir
    ) as server:
        client_env = {"MLFLOW_TRACKING_URI": url}
        yield Target(key, label, description, server, client_env, ready(url), setup)


def bring_up(target: Target) -> None:
    """Wait until ready, measure idle memory, then run the target's setup."""
    target.ready_s = procs.wait_until(target.server, target.ready, timeout=120)
    target.idle = procs.settle(target.server)
    if target.setup:
        target.setup(target)
    _progress(
        target,
        f"ready after {target.ready_s:.1f} s; idle RSS {target.idle.rss / procs.MB:.0f} MB "
        f"in {target.idle.processes} processes",
    )


@contextlib.contextmanager
def stock_mlflow(root: Path) -> Iterator[Target]:
    port = procs.free_port()
    data = root / "A"
    command = [
        venv_script("mlflow"), "server",
        "--backend-store-uri", f"sqlite:///{data / 'mlflow.db'}",
        "--artifacts-destination", str(data / "artifacts"),
        "--host", "127.0.0.1", "--port", str(port),
    ]  # fmt: skip
    description = (
        "`" + " ".join(["mlflow", *command[1:]]) + "` (defaults: 4 workers, job execution on)"
    )
    url = f"http://127.0.0.1:{port}"
    with _launched("A", "A stock mlflow", description, command, root, _mlflow_ready, url) as t:
        yield t


@contextlib.contextmanager
def reference_mlflow(root: Path) -> Iterator[Target]:
    port = procs.free_port()
    command = [
        sys.executable, "-m", "bench.reference_server",
        "--port", str(port), "--data-dir", str(root / "B"), "--workers", str(WORKERS),
    ]  # fmt: skip
    description = (
        f"mlflow.server.fastapi_app:app, no auth, uvicorn {WORKERS} workers, TCP_NODELAY "
        "on the listening socket, job execution off (bench/reference_server.py)"
    )
    url = f"http://127.0.0.1:{port}"
    with _launched("B", "B mlflow+NODELAY", description, command, root, _mlflow_ready, url) as t:
        yield t


def _create_user(data_dir: Path, url: str) -> None:
    env = {**procs.clean_env(data_dir / "home"), "MANTIK_DATA_DIR": str(data_dir)}
    procs.create_user(url, data_dir, env, USERNAME, TEMPORARY_PASSWORD, PASSWORD)


@contextlib.contextmanager
def mantik_platform(root: Path) -> Iterator[Target]:
    port = procs.free_port()
    data = root / "C"
    command = [
        venv_script("mantik"), "server", "start",
        "--port", str(port), "--workers", str(WORKERS),
    ]  # fmt: skip
    description = f"`mantik server start --workers {WORKERS}`, user '{USERNAME}' (JWT)"

    def setup(target: Target) -> None:
        _create_user(data, target.server.url)
        target.client_env.update(MANTIK_USERNAME=USERNAME, MANTIK_PASSWORD=PASSWORD)

    url = f"http://127.0.0.1:{port}"
    with _launched(
        "C", "C mantik", description, command, root, _platform_ready, url,
        server_env={"MANTIK_DATA_DIR": str(data)}, setup=setup,
    ) as target:  # fmt: skip
        yield target


# -- workloads ----------------------------------------------------------------------------


def run_client(target: Target, args: list[str], workdir: Path) -> dict[str, Any]:
    env = {**procs.clean_env(workdir / "home"), **target.client_env}
    completed = subprocess.run(
        [sys.executable, "-m", "bench.tracking_client", *args],
        env=env,
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=900,
    )
    result = parse_result(completed.stdout)
    if result is not None:
        return result
    raise RuntimeError(
        f"{target.key} {args[0]} failed ({completed.returncode}):\n{completed.stderr[-3000:]}\n"
        f"server log:\n{target.server.log_tail()}"
    )


def log_metric(target: Target, calls: int, workdir: Path) -> None:
    cpu_before = procs.tree_cpu_seconds(target.server.process.pid)
    result = run_client(target, ["log_metric", "--count", str(calls)], workdir)
    cpu = procs.tree_cpu_seconds(target.server.process.pid) - cpu_before
    # Includes the untimed setup (experiment, run): a few calls' worth.
    result["server_cpu_ms_per_call"] = 1000 * cpu / calls
    target.record("log_metric", result)
    _progress(
        target,
        f"log_metric x{calls}: {result['per_call_ms']:.2f} ms per call "
        f"(server CPU {result['server_cpu_ms_per_call']:.2f} ms)",
    )


def log_batch(target: Target, workdir: Path) -> None:
    result = run_client(target, ["log_batch", "--count", str(BATCH_METRICS)], workdir)
    target.record("log_batch", result)
    _progress(target, f"log_batch {BATCH_METRICS}: {result['seconds']:.2f} s")


def artifact(target: Target, blob: Path, workdir: Path) -> None:
    with procs.RssSampler(target.server.process.pid) as sampler:
        result = run_client(target, ["artifact", "--file", str(blob)], workdir)
    result["upload_peak_mb"] = sampler.peak(*result["upload_window"]) / procs.MB
    before_upload = sampler.before(result["upload_window"][0]) / procs.MB
    result["upload_growth_mb"] = result["upload_peak_mb"] - before_upload
    result["download_peak_mb"] = sampler.peak(*result["download_window"]) / procs.MB
    target.record("artifact", result)
    target.server.remember_tree()
    _progress(
        target,
        f"artifact {ARTIFACT_MB} MB: up {result['upload_s']:.2f} s, "
        f"down {result['download_s']:.2f} s, peak RSS {result['upload_peak_mb']:.0f} MB",
    )


_STARTED = time.monotonic()


def _progress(target: Target, message: str) -> None:
    print(f"  {time.monotonic() - _STARTED:5.0f}s [{target.key}] {message}", flush=True)


def make_blob(path: Path, megabytes: int) -> Path:
    chunk = 8 * procs.MB
    with path.open("wb") as out:
        for _ in range(megabytes * procs.MB // chunk):
            out.write(os.urandom(chunk))
    return path


def run_workloads(targets: list[Target], plan: Plan, blob: Path, workdir: Path) -> None:
    """All workloads; repetitions alternate between the targets."""
    for run in range(max(plan.metric_runs[t.key] for t in targets)):
        for target in targets:
            if run < plan.metric_runs[target.key]:
                log_metric(target, plan.metric_calls[target.key], workdir)
    for _ in range(plan.runs):
        for target in targets:
            log_batch(target, workdir)
    for _ in range(plan.runs):
        for target in targets:
            artifact(target, blob, workdir)


# -- report -------------------------------------------------------------------------------


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or not denominator:
        return None
    return numerator / denominator


@dataclass(frozen=True)
class Measure:
    key: str
    name: str
    workload: str
    field: str
    digits: int
    compare: bool = True  # show C/B (not for differences of a few MB)


MEASURES = [
    Measure("log_metric", "log_metric, ms per call", "log_metric", "per_call_ms", 2),
    Measure("server_cpu", "  server CPU per call, ms", "log_metric", "server_cpu_ms_per_call", 2),
    Measure(
        "log_batch", f"log_batch {BATCH_METRICS // 1000}k metrics, s", "log_batch", "seconds", 2
    ),
    Measure("upload", f"log_artifact {ARTIFACT_MB} MB, s", "artifact", "upload_s", 2),
    Measure("download", f"download_artifacts {ARTIFACT_MB} MB, s", "artifact", "download_s", 2),
    Measure("upload_peak", "peak RSS during upload, MB", "artifact", "upload_peak_mb", 0),
    Measure(
        "upload_growth",
        "  growth over RSS before upload, MB",
        "artifact",
        "upload_growth_mb",
        0,
        compare=False,
    ),
]


def paired_ratios(targets: dict[str, Target], measure: Measure) -> list[float]:
    """C/B of each alternating pair of runs (both saw the same state of the machine)."""
    b, c = ([r[measure.field] for r in targets[k].results.get(measure.workload, [])] for k in "BC")
    if len(b) != len(c):
        return []
    return [ci / bi for bi, ci in zip(b, c, strict=True) if bi]


def summarize(targets: dict[str, Target], measure: Measure) -> dict[str, float | None]:
    values = {k: t.median_of(measure.workload, measure.field) for k, t in targets.items()}
    pairs = paired_ratios(targets, measure)
    return {
        **values,
        "C/B": median(pairs) if pairs else ratio(values.get("C"), values.get("B")),
        "A/C": ratio(values.get("A"), values.get("C")),
    }


def _cells(values: dict[str, float | None], digits: int) -> list[str]:
    return [fmt(values.get(k), digits) for k in "ABC"]


def _idle_mb(target: Target) -> float | None:
    return target.idle.rss / procs.MB if target.idle else None


def _ready_s(target: Target) -> float | None:
    return target.ready_s


def build_result(targets: dict[str, Target], plan: Plan, quick: bool) -> PartResult:
    rows: list[list[str]] = []
    summary: dict[str, dict[str, float | None]] = {}
    for measure in MEASURES:
        values = summary[measure.key] = summarize(targets, measure)
        a_over_c = fmt(values["A/C"], 1) if measure.key == "log_metric" else ""
        c_over_b = fmt(values["C/B"]) if measure.compare else ""
        rows.append([measure.name, *_cells(values, measure.digits), c_over_b, a_over_c])
        if measure.key == "log_metric":
            rows.append(_calls_row(targets, plan))
    scalars: list[tuple[str, str, Callable[[Target], float | None], int]] = [
        ("idle", "idle RSS after start, MB", _idle_mb, 0),
        ("ready", "start until ready, s", _ready_s, 1),
    ]
    for key, name, value, digits in scalars:
        values = {k: value(t) for k, t in targets.items()}
        values["C/B"] = ratio(values["C"], values["B"])
        summary[key] = values
        rows.append([name, *_cells(values, digits), fmt(values["C/B"]), ""])
        if key == "idle":
            rows.append(_processes_row(targets))

    checks = [
        *(
            Check(f"C/B {name}", summary[key]["C/B"], "<=", MAX_C_OVER_B)
            for key, name in RATIO_CHECKS
        ),
        Check("A/C log_metric per call", summary["log_metric"]["A/C"], ">=", MIN_A_OVER_C),
        Check(
            "C peak RSS during upload",
            summary["upload_peak"]["C"],
            "<",
            MAX_UPLOAD_PEAK_MB,
            " MB",
        ),
        Check("C idle RSS", summary["idle"]["C"], "<", MAX_IDLE_MB, " MB"),
    ]
    return PartResult(
        number=1,
        title="tracking: A stock mlflow server / B plain MLflow + TCP_NODELAY / C mantik",
        header=["", *(targets[k].label for k in "ABC"), "C/B", "A/C"],
        rows=rows,
        checks=checks,
        notes=_notes(targets, plan, quick),
        data={
            "plan": {
                "metric_calls": plan.metric_calls,
                "metric_runs": plan.metric_runs,
                "runs": plan.runs,
                "batch_metrics": BATCH_METRICS,
                "artifact_mb": ARTIFACT_MB,
            },
            "summary": summary,
            "paired_c_over_b": {m.key: paired_ratios(targets, m) for m in MEASURES},
            "servers": {key: _server_data(t) for key, t in targets.items()},
        },
    )


def _calls_row(targets: dict[str, Target], plan: Plan) -> list[str]:
    cells = [
        f"{plan.metric_calls[k]}x{len(targets[k].results.get('log_metric', []))}" for k in "ABC"
    ]
    return ["  calls x runs", *cells, "", ""]


def _processes_row(targets: dict[str, Target]) -> list[str]:
    idle = [targets[k].idle for k in "ABC"]
    cells = [str(sample.processes) if sample else "—" for sample in idle]
    return ["  processes (idle)", *cells, "", ""]


def _server_data(target: Target) -> dict[str, Any]:
    return {
        "label": target.label,
        "description": target.description,
        "ready_s": target.ready_s,
        "idle_rss_mb": target.idle.rss / procs.MB if target.idle else None,
        "idle_processes": target.idle.processes if target.idle else None,
        "runs": target.results,
    }


def _notes(targets: dict[str, Target], plan: Plan, quick: bool) -> list[str]:
    notes = [f"{t.label}: {t.description}" for t in targets.values()]
    if plan.metric_calls["A"] < plan.full_metric_calls:
        notes.append(
            f"A logged {plan.metric_calls['A']} metrics, not {plan.full_metric_calls}: its "
            f"per-call time is extrapolated to {plan.full_metric_calls} calls "
            f"(≈ {_extrapolated(targets['A'], plan):.0f} s)."
        )
    notes += [
        "A's job execution was left on (its default); MLFLOW_SERVER_ENABLE_JOB_EXECUTION was "
        "not needed to start it.",
        "B and C were started together and ran at the same time, alternating repetitions; "
        "A ran alone. Each workload "
        "in a fresh client process; setup (sign-in, run creation, first call) not timed.",
        "RSS: sum of VmRSS over the server's process tree (/proc, every 50 ms during the "
        "artifact workload); peak = highest sample while log_artifact ran.",
        "Values are medians over the runs"
        + (" (--quick: one run each, fewer calls)." if quick else ".")
        + " C/B of timed rows is the median of the per-pair ratios (each B run with the C run "
        "right after it), which cancels most drift of a shared machine.",
    ]
    pairs = paired_ratios(targets, MEASURES[0])
    if len(pairs) > 1:
        notes.append("C/B log_metric per pair: " + ", ".join(f"{r:.2f}" for r in pairs))
    return notes


def _extrapolated(target: Target, plan: Plan) -> float:
    per_call = target.median_of("log_metric", "per_call_ms") or 0.0
    return per_call * plan.full_metric_calls / 1000


# -- part ---------------------------------------------------------------------------------


def run(options: Options) -> PartResult:
    busy_before = procs.machine_busy()
    plan = make_plan(options.quick)
    root = options.workdir
    client_dir = root / "client"
    client_dir.mkdir()
    blob = make_blob(client_dir / f"blob-{ARTIFACT_MB}MB.bin", ARTIFACT_MB)
    targets: dict[str, Target] = {}
    with contextlib.ExitStack() as stack:
        pair = [stack.enter_context(launch(root)) for launch in (reference_mlflow, mantik_platform)]
        for target in pair:
            bring_up(target)
            targets[target.key] = target
        run_workloads(pair, plan, blob, client_dir)
    with stock_mlflow(root) as target:
        bring_up(target)
        targets["A"] = target
        run_workloads([target], plan, blob, client_dir)
    result = build_result(targets, plan, options.quick)
    result.data["machine_busy_before"] = busy_before
    if busy_before > BUSY_FRACTION:
        result.notes.append(
            f"Other work kept the machine {100 * busy_before:.0f}% busy before the run: timings "
            "may be skewed (the server CPU row is less affected)."
        )
    return result
