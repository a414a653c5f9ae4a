"""Workloads of part 4 in a fresh process: ``python -m bench.offline_client WORKLOAD``.

``online``: sign in (``mantik.init_tracking()``) and log ``--count`` points with log_batch
(1000 per call) straight to the platform, as a job on a connected node would.
``node``: what an offline job does on its node — the wrapper's init script creates the
local store under the central ids (``MLFLOW_TRACKING_URI`` = sqlite), the same points go
into it, then the wrapper's snapshot script publishes a snapshot; with ``--more``, points go
into the store made before (the job goes on) and a new snapshot is published.
``watch``: submit ``--project`` (an offline job) and sample its sync lag every 0.5 s
(``GET /compute-backend/runs/{id}``) until it ends.
Prints one line ``BENCH_RESULT {json}``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from mlflow import MlflowClient
from mlflow.entities import Metric

from bench.report import emit_result

KEYS = 10
BATCH = 1000


def points(count: int) -> list[Metric]:
    now = int(time.time() * 1000)
    return [Metric(f"m{i % KEYS}", float(i), now + i // KEYS, i // KEYS) for i in range(count)]


def log(client: MlflowClient, run_id: str, count: int) -> float:
    batch = points(count)
    started = time.perf_counter()
    for first in range(0, count, BATCH):
        client.log_batch(run_id, metrics=batch[first : first + BATCH])
    return time.perf_counter() - started


def online(count: int) -> dict[str, Any]:
    import mantik  # type: ignore[import-untyped, unused-ignore]

    mantik.init_tracking()
    client = MlflowClient()
    experiment = os.environ["BENCH_EXPERIMENT_ID"]
    run = client.create_run(experiment, run_name="online")
    client.log_metric(run.info.run_id, "warmup", 0.0)
    seconds = log(client, run.info.run_id, count)
    client.set_terminated(run.info.run_id)
    return {"points": count, "seconds": seconds, "run_id": run.info.run_id}


def node(count: int, node_scripts: Path, more: bool = False) -> dict[str, Any]:
    """``more``: the job goes on — ``count`` more points into the store made before."""
    database = Path(os.environ["MLFLOW_TRACKING_URI"].removeprefix("sqlite:///"))
    if not more:
        subprocess.run([sys.executable, str(node_scripts / "offline_init.py")], check=True)
    seconds = log(MlflowClient(), os.environ["MLFLOW_RUN_ID"], count)
    started = time.perf_counter()
    snapshot = database.parent / "snapshot.db"
    subprocess.run(
        [sys.executable, str(node_scripts / "offline_snapshot.py"), str(database), str(snapshot)],
        check=True,
    )
    return {
        "points": count,
        "local_seconds": seconds,
        "snapshot_seconds": time.perf_counter() - started,
        "snapshot_mb": snapshot.stat().st_size / 1e6,
    }


def watch(project: Path) -> dict[str, Any]:
    import mantik  # type: ignore[import-untyped, unused-ignore]

    mantik.init_tracking()
    compute = mantik.ComputeBackendClient.from_env()
    experiment = os.environ["BENCH_EXPERIMENT_ID"]
    submitted = compute.submit_run(experiment, {}, project, "backend.json")
    lags: list[float] = []
    while not (info := compute.get_status(submitted.run_id)).done:
        if info.state == "RUNNING" and info.sync_lag_seconds is not None:
            lags.append(info.sync_lag_seconds)
        time.sleep(0.5)
    client = MlflowClient()
    keys = client.get_run(submitted.run_id).data.metrics
    synced = sum(len(client.get_metric_history(submitted.run_id, key)) for key in keys)
    said = [line.split() for line in compute.get_logs(submitted.run_id).splitlines()]
    logged = next((int(words[1]) for words in said if words[:1] == ["logged"]), None)
    return {
        "run_id": submitted.run_id,
        "status": info.run_status,
        "tracking": info.tracking,
        "lags": lags,
        "central_points": synced,
        "job_points": logged,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("workload", choices=["online", "node", "watch"])
    parser.add_argument("--count", type=int, default=0)
    parser.add_argument("--node-scripts", type=Path)
    parser.add_argument("--more", action="store_true")
    parser.add_argument("--project", type=Path)
    args = parser.parse_args()
    if args.workload == "online":
        emit_result(online(args.count))
    elif args.workload == "node":
        emit_result(node(args.count, args.node_scripts, args.more))
    else:
        emit_result(watch(args.project))


if __name__ == "__main__":
    main()
