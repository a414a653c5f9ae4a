"""``"Launcher": "srun"`` on the real single-node SLURM: every task runs, one run is tracked,
a failing task fails the run and is named; other sites refuse the key."""

from __future__ import annotations

import socket
from collections.abc import Callable
from pathlib import Path

import mlflow
import pytest

import mantik
from tests.compute_e2e.conftest import sign_in
from tests.support.platform import PlatformProcess
from tests.support.services import require_slurm

TASKS = {
    "ComputeSite": "slurm",
    "Launcher": "srun",
    "Resources": {
        "Runtime": "10m",
        "Queue": "debug",
        "Nodes": 1,
        "TasksPerNode": 2,
        "CPUsPerTask": 1,
    },
}

# Every rank logs; only rank 0's metric may reach the run.
LOG_RANK = """\
import os
import time
import mlflow

rank = int(os.environ["RANK"])
print(f"task RANK={rank} WORLD_SIZE={os.environ['WORLD_SIZE']} "
      f"LOCAL_RANK={os.environ['LOCAL_RANK']} MASTER={os.environ['MASTER_ADDR']}:"
      f"{os.environ['MASTER_PORT']}", flush=True)
mlflow.log_metric("rank_metric", rank)
time.sleep(4)  # a few samples of system metrics (one a second)
"""


@pytest.mark.slurm
@pytest.mark.parametrize("tracking", ["online", "offline"])
def test_every_task_runs_and_only_rank_0_tracks(
    make_project: Callable[..., Path], experiment: str, tracking: str
) -> None:
    require_slurm()
    config = {
        **TASKS,
        "Tracking": tracking,
        "SystemMetrics": 1,
    }
    project = make_project("python log_rank.py", config, {"log_rank.py": LOG_RANK})
    client = mantik.ComputeBackendClient.from_env()
    submitted = client.submit_run(experiment, {}, project, "backend.json")
    info = client.wait(submitted.run_id, timeout=180)
    log = client.get_logs(submitted.run_id)
    assert (info.run_status, info.exit_code) == ("FINISHED", 0), log
    for rank in (0, 1):
        assert f"{rank}: task RANK={rank} WORLD_SIZE=2 LOCAL_RANK={rank} MASTER=vm:" in log, log
    runs = mlflow.search_runs([experiment], run_view_type=3, output_format="list")
    assert [run.info.run_id for run in runs] == [submitted.run_id]
    history = mlflow.MlflowClient().get_metric_history(submitted.run_id, "rank_metric")
    assert [m.value for m in history] == [0.0]
    # One node: its first task sampled CPU and memory into the run, under the node's name.
    metrics = mlflow.get_run(submitted.run_id).data.metrics
    node = socket.gethostname().split(".")[0]
    assert f"system/{node}/cpu_utilization_percentage" in metrics, sorted(metrics)
    assert f"system/{node}/system_memory_usage_megabytes" in metrics, sorted(metrics)


@pytest.mark.slurm
def test_a_failing_task_fails_the_run_and_is_named(
    make_project: Callable[..., Path], experiment: str
) -> None:
    require_slurm()
    command = 'echo "rank $RANK up"; if [ "$RANK" = 1 ]; then exit 3; fi; sleep 30'
    project = make_project(command, TASKS)
    client = mantik.ComputeBackendClient.from_env()
    submitted = client.submit_run(experiment, {}, project, "backend.json")
    info = client.wait(submitted.run_id, timeout=180)
    log = client.get_logs(submitted.run_id)
    assert (info.run_status, info.exit_code) == ("FAILED", 3), log
    assert mlflow.get_run(submitted.run_id).info.status == "FAILED"
    assert "1: rank 1 up" in log
    assert "mantik: task(s) failed: rank 1 exited with 3" in log


def test_other_sites_refuse_the_launcher(
    make_project: Callable[..., Path],
    sqlite_platform: PlatformProcess,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sign_in(monkeypatch, sqlite_platform)
    experiment = mlflow.create_experiment("launcher-on-local")
    project = make_project("true", {"ComputeSite": "local", "Launcher": "srun"})
    client = mantik.ComputeBackendClient.from_env()
    with pytest.raises(mantik.PlatformError, match="Launcher") as refused:
        client.submit_run(experiment, {}, project, "backend.json")
    assert refused.value.status_code == 400
    assert "SLURM sites only" in str(refused.value)
    assert mlflow.search_runs([experiment], run_view_type=3, output_format="list") == []
