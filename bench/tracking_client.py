"""One tracking workload in a fresh client process: ``python -m bench.tracking_client WORKLOAD``.

Talks to ``MLFLOW_TRACKING_URI``; with ``MANTIK_USERNAME`` set it signs in first with
``mantik.init_tracking()``, as a user of the platform would. Prints one line
``BENCH_RESULT {json}``. Setup (sign-in, experiment, run, first call) is not timed.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import mlflow
from mlflow import MlflowClient
from mlflow.entities import Metric

from bench.report import emit_result

EXPERIMENT = "bench"


def connect() -> None:
    if os.environ.get("MANTIK_USERNAME"):
        import mantik  # type: ignore[import-untyped, unused-ignore]

        mantik.init_tracking()
    mlflow.set_experiment(EXPERIMENT)


def log_metric(calls: int) -> dict[str, Any]:
    latencies = []
    with mlflow.start_run():
        mlflow.log_metric("warmup", 0.0)
        started = time.perf_counter()
        for step in range(calls):
            before = time.perf_counter()
            mlflow.log_metric("loss", 1.0 / (step + 1), step=step)
            latencies.append(time.perf_counter() - before)
        seconds = time.perf_counter() - started
    return {
        "calls": calls,
        "seconds": seconds,
        "per_call_ms": 1000 * seconds / calls,
        "p50_ms": 1000 * statistics.median(latencies),
        "p95_ms": 1000 * statistics.quantiles(latencies, n=20)[-1],
    }


def log_batch(metrics: int) -> dict[str, Any]:
    keys = 10
    now = int(time.time() * 1000)
    batch = [Metric(f"m{i % keys}", float(i), now, i // keys) for i in range(metrics)]
    with mlflow.start_run() as run:
        mlflow.log_metric("warmup", 0.0)
        started = time.perf_counter()
        MlflowClient().log_batch(run.info.run_id, metrics=batch)
        seconds = time.perf_counter() - started
    return {"metrics": metrics, "seconds": seconds}


def artifact(path: Path) -> dict[str, Any]:
    size = path.stat().st_size
    with mlflow.start_run() as run:
        mlflow.log_metric("warmup", 0.0)
        upload_start = time.monotonic()
        mlflow.log_artifact(str(path))
        upload_end = time.monotonic()
    with tempfile.TemporaryDirectory(dir=path.parent) as target:
        download_start = time.monotonic()
        local = mlflow.artifacts.download_artifacts(
            run_id=run.info.run_id, artifact_path=path.name, dst_path=target
        )
        download_end = time.monotonic()
        downloaded = Path(local).stat().st_size
    if downloaded != size:
        raise RuntimeError(f"downloaded {downloaded} bytes, uploaded {size}")
    return {
        "bytes": size,
        "upload_s": upload_end - upload_start,
        "download_s": download_end - download_start,
        "upload_window": [upload_start, upload_end],
        "download_window": [download_start, download_end],
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("workload", choices=["log_metric", "log_batch", "artifact"])
    parser.add_argument("--count", type=int, default=0)
    parser.add_argument("--file", type=Path)
    args = parser.parse_args()
    connect()
    if args.workload == "log_metric":
        result = log_metric(args.count)
    elif args.workload == "log_batch":
        result = log_batch(args.count)
    else:
        result = artifact(args.file)
    emit_result(result)


if __name__ == "__main__":
    main()
