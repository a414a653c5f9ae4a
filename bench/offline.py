"""Part 4: offline tracking — sync throughput against online logging, and the sync lag.

One platform (``mantik server start`` with its defaults: one worker, the poller every 2 s,
node snapshots every 10 s) and a site ``offline-local`` whose tracking URI is a closed port,
so that its jobs cannot reach the platform.

A  online: a fresh client process signs in and logs N points with ``log_batch`` (1000 per
   call) to the platform over HTTP — what a job on a connected node does.
B  sync: the same N points go into a job's local store on the "node" (the wrapper's init
   and snapshot scripts, the job's MLflow); then the platform's sync
   (``OfflineSyncer.sync``, run in this process against the platform's stores, as its
   poller runs it) pushes the snapshot into the central run. Timed: the sync alone.
A and B alternate (A, B, A, B, …); each uses a fresh run.
C  lag: an offline job on ``offline-local`` logs up to 1,000 points/s (10 metrics per step,
   one ``log_metrics`` call each) for a minute; its sync lag (``GET
   /compute-backend/runs/{id}``: seconds since the newest point that reached the central
   run) is sampled every 0.5 s while it runs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

from bench import procs
from bench.report import Check, Options, PartResult, fmt, median, parse_result

REPO = Path(__file__).resolve().parent.parent
USERNAME = "bench-offline"
TEMPORARY_PASSWORD = "Bench-Temporary-Pw-1!"
PASSWORD = "Bench-Final-Password-9?"
SITE = "offline-local"
# The platform's defaults (ServerSettings): a point waits for the next snapshot, then for
# the next poll cycle.
SNAPSHOT_SECONDS = 10.0
POLL_SECONDS = 2.0

# Targets.
MIN_SYNC_OVER_ONLINE = 1.0  # the sync must keep up with jobs that could log online
MAX_LAG_SECONDS = SNAPSHOT_SECONDS + POLL_SECONDS + 3.0  # one sync period, some slack

TRAIN = """
import sys, time
import mlflow

seconds = float(sys.argv[1])
with mlflow.start_run():
    start = time.time()
    step = 0
    while time.time() - start < seconds:
        mlflow.log_metrics({f"m{k}": step + k / 10 for k in range(10)}, step=step)
        step += 1
        pause = start + step / 100 - time.time()
        if pause > 0:
            time.sleep(pause)
print("logged", step * 10, "points", flush=True)
"""

_STARTED = time.monotonic()


def _say(message: str) -> None:
    print(f"  {time.monotonic() - _STARTED:5.0f}s {message}", flush=True)


def _env(home: Path, **extra: str) -> dict[str, str]:
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "_MLFLOW_", "MANTIK_"))
    }
    home.mkdir(parents=True, exist_ok=True)
    pythonpath = [str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])]
    env.update(HOME=str(home), PYTHONPATH=os.pathsep.join(pythonpath), PYTHONUNBUFFERED="1")
    return {**env, **extra}


def _python(args: list[str], env: dict[str, str], cwd: Path) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=900
    )
    result = parse_result(done.stdout)
    if done.returncode != 0 or result is None:
        raise RuntimeError(f"{args} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return result


def _create_user(data_dir: Path, url: str, home: Path) -> None:
    subprocess.run(
        [
            sys.executable, "-m", "mantik.cli", "admin", "users", "create", USERNAME,
            "--temporary-password", TEMPORARY_PASSWORD, "--data-dir", str(data_dir),
        ],
        env=_env(home, MANTIK_DATA_DIR=str(data_dir)), check=True, capture_output=True,
        timeout=120,
    )  # fmt: skip
    procs.replace_temporary_password(url, USERNAME, TEMPORARY_PASSWORD, PASSWORD)


class SyncBench:
    """B: the platform's sync, in this process, on the platform's stores."""

    def __init__(self, data_dir: Path, sites: Path, experiment: str, home: Path) -> None:
        from mantik.server.compute.offline_sync import OfflineSyncer
        from mantik.server.compute.service import ComputeService
        from mantik.server.config import ServerSettings
        from mantik.server.platform import build

        settings = ServerSettings(data_dir=data_dir, sites_file=sites)
        parts = build(settings)
        self.service = ComputeService(settings, parts.db, parts.tokens, parts.identity)
        self.syncer = OfflineSyncer(self.service)
        self.experiment = experiment
        self.home = home
        self.jobs = data_dir / "jobs" / SITE

    def run(self, count: int) -> dict[str, Any]:
        from mantik.compute.states import JobState
        from mantik.server.compute import node
        from mantik.server.models import ComputeJob, utcnow

        run = self.service.runs.create(self.experiment, run_name="sync", tags={}, params={})
        run_id = run.info.run_id
        offline = self.jobs / run_id / ".mantik" / "offline"
        (offline / "artifacts").mkdir(parents=True)
        (offline.parent / "tracking").write_text("offline\n")
        env = _env(
            self.home,
            MLFLOW_TRACKING_URI=f"sqlite:///{offline / 'mlruns.db'}",
            MLFLOW_RUN_ID=run_id,
            MLFLOW_EXPERIMENT_ID=self.experiment,
        )
        scripts = Path(node.__file__).parent
        args = ["--count", str(count), "--node-scripts", str(scripts)]
        local = _python(["-m", "bench.offline_client", "node", *args], env, offline)
        # Never stored: the poller does not see this job; only the sync state is kept.
        job = ComputeJob(
            run_id=run_id,
            experiment_id=self.experiment,
            username=USERNAME,
            site=SITE,
            job_id=None,
            state=JobState.RUNNING,
            entry_point="main",
            workdir=str(offline.parent.parent),
            token_id="-",
            token_expires_at=utcnow() + timedelta(hours=1),
        )
        started = time.perf_counter()
        self.syncer.sync(job, final=False, wait=True)
        seconds = time.perf_counter() - started
        client = self.service.runs.client
        synced = sum(len(client.get_metric_history(run_id, f"m{k}")) for k in range(10))
        if synced != count:
            raise RuntimeError(f"the sync brought {synced} of {count} points")
        return {**local, "sync_seconds": seconds}


def _project(root: Path, seconds: float) -> Path:
    project = root / "lag-project"
    project.mkdir()
    (project / "MLproject").write_text(
        f"name: lag\nentry_points:\n  main:\n    command: 'python train.py {seconds:g}'\n"
    )
    (project / "train.py").write_text(TRAIN)
    (project / "backend.json").write_text(json.dumps({"ComputeSite": SITE, "Tracking": "auto"}))
    return project


def run(options: Options) -> PartResult:
    count, reps, lag_seconds = (20_000, 1, 30.0) if options.quick else (100_000, 3, 60.0)
    root = options.workdir
    data_dir, home = root / "platform", root / "home"
    data_dir.mkdir()
    sites = root / "sites.yaml"
    closed = f"http://127.0.0.1:{procs.free_port()}"
    sites.write_text(
        json.dumps({"sites": [{"name": SITE, "driver": "local", "tracking_uri": closed}]})
    )
    port = procs.free_port()
    url = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "mantik.cli", "server", "start", "--port", str(port)]
    server_env = _env(
        root / "server-home", MANTIK_DATA_DIR=str(data_dir), MANTIK_SITES_FILE=str(sites)
    )
    with procs.running(
        "platform", command, env=server_env, url=url, log_path=root / "platform.log", cwd=root
    ) as server:
        ready = procs.wait_until(
            server, lambda: procs.http_status(f"{url}/api/mantik/health") == 200, timeout=120
        )
        _say(f"platform ready after {ready:.1f} s")
        _create_user(data_dir, url, home)
        client_env = _env(
            home, MLFLOW_TRACKING_URI=url, MANTIK_USERNAME=USERNAME, MANTIK_PASSWORD=PASSWORD
        )
        code = "import mantik, mlflow; mantik.init_tracking(); print(mlflow.create_experiment('x'))"
        made = subprocess.run(
            [sys.executable, "-c", code],
            env=client_env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        experiment = made.stdout.strip().splitlines()[-1]
        client_env["BENCH_EXPERIMENT_ID"] = experiment
        bench = SyncBench(data_dir, sites, experiment, home)
        onlines, syncs = [], []
        for _ in range(reps):
            onlines.append(
                _python(
                    ["-m", "bench.offline_client", "online", "--count", str(count)],
                    client_env,
                    root,
                )
            )
            _say(f"A online: {count} points in {onlines[-1]['seconds']:.2f} s")
            syncs.append(bench.run(count))
            _say(_describe_sync(count, syncs[-1]))
        project = _project(root, lag_seconds)
        watched = _python(
            ["-m", "bench.offline_client", "watch", "--project", str(project)], client_env, root
        )
        _say(
            f"C lag: {len(watched['lags'])} samples, run {watched['status']}, "
            f"{watched['central_points']} points synced"
        )
    return _result(count, onlines, syncs, watched, lag_seconds, options.quick)


def _describe_sync(count: int, result: dict[str, Any]) -> str:
    return (
        f"B sync: {count} points in {result['sync_seconds']:.2f} s (the node logged them in "
        f"{result['local_seconds']:.2f} s; snapshot {result['snapshot_seconds']:.2f} s, "
        f"{result['snapshot_mb']:.0f} MB)"
    )


def _percentile(values: list[float], fraction: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def _result(
    count: int,
    onlines: list[dict[str, Any]],
    syncs: list[dict[str, Any]],
    watched: dict[str, Any],
    lag_seconds: float,
    quick: bool,
) -> PartResult:
    online_rate = median([count / r["seconds"] for r in onlines])
    sync_rate = median([count / r["sync_seconds"] for r in syncs])
    node_rate = median([count / r["local_seconds"] for r in syncs])
    lags: list[float] = watched["lags"]
    job_rate = (watched["job_points"] or 0) / lag_seconds  # what the job managed to log
    lag_p50, lag_p95, lag_max = _percentile(lags, 0.5), _percentile(lags, 0.95), max(lags or [0.0])
    rows = [
        [
            f"A online log_batch over HTTP ({count:,} points)",
            f"{online_rate:,.0f}",
            fmt(median([r["seconds"] for r in onlines])),
        ],
        [
            f"B offline sync of a snapshot ({count:,} points)",
            f"{sync_rate:,.0f}",
            fmt(median([r["sync_seconds"] for r in syncs])),
        ],
        [
            "  the job logging into its local store",
            f"{node_rate:,.0f}",
            fmt(median([r["local_seconds"] for r in syncs])),
        ],
        [
            "  snapshot on the node (backup API)",
            "",
            fmt(median([r["snapshot_seconds"] for r in syncs])),
        ],
        ["B / A (sync over online)", fmt(sync_rate / online_rate), ""],
        [
            f"C sync lag while the job logs, p50 (n={len(lags)})",
            f"{job_rate:,.0f}",
            fmt(lag_p50, 1),
        ],
        ["  p95", "", fmt(lag_p95, 1)],
        ["  max", "", fmt(lag_max, 1)],
        [
            "  points in the central run / logged by the job",
            f"{watched['central_points']:,}",
            f"{watched['job_points'] or 0:,}",
        ],
    ]
    checks = [
        Check("sync / online throughput", sync_rate / online_rate, ">=", MIN_SYNC_OVER_ONLINE),
        Check("sync lag p95", lag_p95, "<=", MAX_LAG_SECONDS, " s"),
        Check("offline run FINISHED", 1.0 if watched["status"] == "FINISHED" else 0.0, ">=", 1.0),
        Check(
            "points missing or doubled",
            float(abs(watched["central_points"] - (watched["job_points"] or -1))),
            "<=",
            0.0,
        ),
    ]
    notes = [
        f"Defaults: the node publishes a snapshot every {SNAPSHOT_SECONDS:g} s, the poller syncs "
        f"every {POLL_SECONDS:g} s; a point therefore reaches the central run within one sync "
        f"period ({SNAPSHOT_SECONDS + POLL_SECONDS:g} s) plus the sync itself. Both are settings "
        "(MANTIK_OFFLINE_SNAPSHOT_SECONDS, MANTIK_POLL_SECONDS).",
        "B writes with the server-side MlflowClient straight into the tracking store, 1000 "
        "points per log_batch, and commits its high-water mark after each batch; A goes "
        "through HTTP, authentication and MLflow's REST handlers.",
        "Lag: seconds since the newest point that reached the central run (node clock = "
        "platform clock here), sampled every 0.5 s while the job runs.",
    ]
    if quick:
        notes.append(f"--quick: {count:,} points, one repetition, a {lag_seconds:g} s job.")
    return PartResult(
        number=4,
        title="offline tracking: sync throughput vs online logging, and the lag",
        header=["measure", "points/s", "seconds"],
        rows=rows,
        checks=checks,
        notes=notes,
        data={"count": count, "online": onlines, "sync": syncs, "lag": watched},
    )
