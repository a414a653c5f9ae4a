"""The default SQLite stores hold many concurrent writers: no "database is locked"."""

from __future__ import annotations

import threading
import time

import pytest
from mlflow import MlflowClient
from mlflow.entities import Metric

from tests.support.platform import PlatformProcess, unique

CLIENTS = 50
SECONDS = 10


def test_fifty_clients_log_at_once_without_an_error(
    sqlite_platform: PlatformProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    user = sqlite_platform.new_user("writers")
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", sqlite_platform.access_token(user))
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")  # every answer counts
    client = MlflowClient(sqlite_platform.url)
    experiment = client.create_experiment(unique("writers"))
    runs = [client.create_run(experiment).info.run_id for _ in range(CLIENTS)]
    sent = dict.fromkeys(runs, 0)
    errors: list[str] = []
    start = threading.Barrier(CLIENTS)

    def write(run_id: str) -> None:
        own = MlflowClient(sqlite_platform.url)
        start.wait()
        step, deadline = 0, time.monotonic() + SECONDS
        while time.monotonic() < deadline:
            try:
                if step % 3 == 2:
                    own.set_tag(run_id, "step", str(step))
                    own.get_run(run_id)  # readers beside the writers
                    step += 1
                    continue
                if step % 3:
                    own.log_metric(run_id, "single", step, step=step)
                else:
                    stamp = int(time.time() * 1000)
                    batch = [Metric(f"m{i}", step, stamp, step) for i in range(5)]
                    own.log_batch(run_id, metrics=batch, params=[])
            except Exception as exc:  # what a user would see
                errors.append(f"{type(exc).__name__}: {exc}")
                return
            sent[run_id] += 1 if step % 3 else 5
            step += 1

    threads = [threading.Thread(target=write, args=(run,)) for run in runs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == [], f"{len(errors)} clients failed, e.g. {errors[:3]}"
    stored = {}
    for run_id in runs:
        metrics = client.get_run(run_id).data.metrics
        names = ["single", *(f"m{i}" for i in range(5))]
        stored[run_id] = sum(
            len(client.get_metric_history(run_id, n)) for n in names if n in metrics
        )
    assert stored == sent
    assert sum(sent.values()) > CLIENTS * 5
