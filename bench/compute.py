"""Part 2 — compute: submission latency on SLURM, batched polling, memory for big projects.

1. ``submit_run`` of a small project until SLURM lists the job: median of 20 (target < 1.5 s).
2. The poller with 200 active SLURM jobs: scheduler queries per cycle (target 1), counted
   by a shim that wraps the real ``squeue``.
3. Peak RSS of client and platform while submitting a 1 GiB project folder (targets
   < 150 MB for the client, < 150 MB platform growth over its idle size).
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench import procs
from bench.report import Check, Options, PartResult, fmt, median, parse_result

USERNAME, TEMPORARY, PASSWORD = "bench-compute", "Temp-bench-1!", "Bench-compute-2?"
SMALL_CONFIG = {"ComputeSite": "slurm", "Resources": {"Runtime": "5m", "Queue": "debug"}}
GIB = 1024**3


def _venv(name: str) -> str:
    return str(Path(sys.executable).parent / name)


def _project(root: Path, big: bool) -> Path:
    project = root / ("big-project" if big else "small-project")
    project.mkdir(parents=True)
    (project / "MLproject").write_text("name: bench\nentry_points:\n  main:\n    command: 'true'\n")
    (project / "config.json").write_text(json.dumps(SMALL_CONFIG))
    if big:
        # Zeros compress fast; the point is that no layer holds the project in memory.
        with (project / "data.bin").open("wb") as handle:
            handle.truncate(GIB)
    return project


def _client(env: dict[str, str], mode: str, project: Path, count: int, cwd: Path) -> dict[str, Any]:
    completed = subprocess.run(
        [sys.executable, "-m", "bench.compute_client", mode, "--project", str(project),
         "--config", "config.json", "--count", str(count)],
        env=env, cwd=cwd, capture_output=True, text=True, timeout=1800,
    )  # fmt: skip
    result = parse_result(completed.stdout)
    if result is None:
        raise RuntimeError(f"client {mode} failed:\n{completed.stderr[-3000:]}")
    return result


def _polling(root: Path, jobs: int) -> dict[str, Any]:
    """Real SLURM jobs (held), real poller, a counting squeue shim on PATH."""
    from mantik.compute.states import JobState
    from mantik.server.compute.poller import Poller
    from mantik.server.compute.service import ComputeService
    from mantik.server.models import ComputeJob, utcnow
    from mantik.server.platform import build, prepare
    from mantik.server.settings import ServerSettings

    shim = root / "shim"
    shim.mkdir()
    calls = root / "squeue-calls"
    real = shutil.which("squeue")
    (shim / "squeue").write_text(f'#!/bin/sh\necho x >> {calls}\nexec {real} "$@"\n')
    (shim / "squeue").chmod(0o755 | stat.S_IEXEC)
    ids = []
    for _ in range(jobs):
        out = subprocess.run(
            ["sbatch", "--hold", "--parsable", "--job-name=bench-poll", "--wrap", "true"],
            capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
        ids.append(out.strip().split(";")[0])
    old_path = os.environ["PATH"]
    os.environ["PATH"] = f"{shim}{os.pathsep}{old_path}"
    try:
        settings = ServerSettings(data_dir=root / "poll-platform")
        prepare(settings)
        platform = build(settings)
        service = ComputeService(settings, platform.db, platform.tokens, platform.identity)
        with platform.db.session() as session:
            for job_id in ids:
                session.add(
                    ComputeJob(
                        run_id=f"r{job_id}", experiment_id="1", username="bench", site="slurm",
                        job_id=job_id, state=JobState.SUBMITTED, entry_point="main",
                        workdir=str(root / job_id), token_id=job_id, token_expires_at=utcnow(),
                    )
                )  # fmt: skip
        poller = Poller(service)
        cycles, durations = 3, []
        for _ in range(cycles):
            started = time.perf_counter()
            poller.poll_once()
            durations.append(time.perf_counter() - started)
        with platform.db.session() as session:
            pending = sum(
                1 for job in session.query(ComputeJob) if job.state == JobState.PENDING.value
            )
    finally:
        os.environ["PATH"] = old_path
        subprocess.run(["scancel", *ids], check=False)
    return {
        "jobs": jobs,
        "cycles": cycles,
        "squeue_calls": len(calls.read_text().splitlines()),
        "poller_queries": poller.queries,
        "cycle_ms": [1000 * d for d in durations],
        "seen_pending": pending,
    }


def run(options: Options) -> PartResult:
    root = options.workdir
    root.mkdir(parents=True, exist_ok=True)
    if shutil.which("sbatch") is None:
        raise RuntimeError("part 2 needs the local SLURM: run `make slurm-up`")
    data = root / "platform"
    port = procs.free_port()
    url = f"http://127.0.0.1:{port}"
    sites = root / "sites.yaml"
    teams = [procs.one_team_site(n, n, USERNAME) for n in ("local", "slurm")]
    sites.write_text(json.dumps({"sites": teams}))
    env = {**os.environ, "MANTIK_DATA_DIR": str(data), "MANTIK_SITES_FILE": str(sites)}
    count = 5 if options.quick else 20
    with procs.running(
        "mantik", [_venv("mantik"), "server", "start", "--port", str(port)],
        env=env, url=url, log_path=root / "platform.log", cwd=root,
    ) as server:  # fmt: skip
        procs.wait_until(server, lambda: procs.http_status(f"{url}/api/mantik/health") == 200, 120)
        subprocess.run(
            [_venv("mantik"), "admin", "users", "create", USERNAME, "--temporary-password",
             TEMPORARY, "--data-dir", str(data)],
            env=env, check=True, capture_output=True,
        )  # fmt: skip
        import httpx

        httpx.post(
            f"{url}/api/mantik/password",
            json={"username": USERNAME, "password": TEMPORARY, "new_password": PASSWORD},
        ).raise_for_status()
        home = root / "home"
        home.mkdir()
        client_env = {
            **os.environ, "HOME": str(home), "MANTIK_USERNAME": USERNAME,
            "MANTIK_PASSWORD": PASSWORD, "MLFLOW_TRACKING_URI": url,
            "PYTHONPATH": str(Path(__file__).resolve().parents[1]),
        }  # fmt: skip
        latency = _client(client_env, "latency", _project(root, big=False), count, root)
        idle = procs.settle(server).rss
        with procs.RssSampler(server.process.pid) as sampler:
            big = _client(client_env, "big", _project(root, big=True), 1, root)
        platform_peak = sampler.peak(*big["window"])
    polling = _polling(root, 50 if options.quick else 200)
    submit_median = median(latency["seconds"])
    per_cycle = polling["squeue_calls"] / polling["cycles"]
    growth = (platform_peak - idle) / procs.MB
    rows = [
        ["submit → listed by SLURM, s (median)", fmt(submit_median, 3), f"{count} submissions"],
        ["  fastest / slowest, s", f"{fmt(min(latency['seconds']), 3)} / "
         f"{fmt(max(latency['seconds']), 3)}", ""],
        [f"poll {polling['jobs']} active jobs: squeue calls per cycle", fmt(per_cycle, 1),
         f"{polling['cycles']} cycles"],
        ["  poll cycle, ms (median)", fmt(median(polling["cycle_ms"]), 0), ""],
        ["1 GiB project: submit, s", fmt(big["seconds"], 1), ""],
        ["  client peak RSS, MB (before)", f"{fmt(big['client_peak_mb'], 0)} "
         f"({fmt(big['client_before_mb'], 0)})", "mantik client, no MLflow import"],
        ["  platform peak RSS, MB (idle)", f"{fmt(platform_peak / procs.MB, 0)} "
         f"({fmt(idle / procs.MB, 0)})", "whole process tree"],
        ["  platform growth, MB", fmt(growth, 0), ""],
    ]  # fmt: skip
    return PartResult(
        number=2,
        title="compute: submission latency (SLURM), batched polling, big projects",
        header=["", "value", "note"],
        rows=rows,
        checks=[
            Check("submit → visible in SLURM (median)", submit_median, "<", 1.5, " s"),
            Check("squeue calls per poll cycle", per_cycle, "<=", 1.0),
            Check("client peak RSS, 1 GiB project", big["client_peak_mb"], "<", 150, " MB"),
            Check("platform RSS growth, 1 GiB project", growth, "<", 150, " MB"),
        ],
        notes=[
            "platform: `mantik server start` (1 worker), SQLite, local SLURM site",
            "the 1 GiB project is one sparse file of zeros (compresses fast; no layer may "
            "hold it in memory)",
            f"polling: {polling['jobs']} held sbatch jobs registered with a real Poller; "
            f"{polling['seen_pending']} seen PENDING after the cycles",
        ],
        data={"latency": latency, "big": big, "polling": polling, "idle_rss": idle},
    )
