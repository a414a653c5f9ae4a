"""``mlflow run -b mantik`` as a subprocess, and ``mlflow.projects.run(backend="mantik")``."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import pytest

from tests.compute_e2e.conftest import sign_in
from tests.support.platform import PlatformProcess
from tests.support.services import require_slurm


def mlflow_run(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    mlflow_cli = Path(sys.executable).parent / "mlflow"
    return subprocess.run(
        [str(mlflow_cli), "run", str(project), "--backend", "mantik", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ},
    )


def final_status(run_id: str, timeout: float = 180) -> str:
    """`mlflow run` runs plugin backends asynchronously: wait for the run to end."""
    deadline = time.monotonic() + timeout
    while (status := mlflow.get_run(run_id).info.status) not in ("FINISHED", "FAILED", "KILLED"):
        assert time.monotonic() < deadline, f"run {run_id} still {status}"
        time.sleep(0.5)
    return status


def submitted_run_id(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stderr
    return re.search(r"submitted run ([0-9a-f]{32})", result.stderr).group(1)  # type: ignore[union-attr]


def test_mlflow_run_reaches_the_true_final_status(
    sqlite_platform: PlatformProcess, monkeypatch: pytest.MonkeyPatch, demo: Path
) -> None:
    require_slurm()
    sign_in(monkeypatch, sqlite_platform)
    experiment = mlflow.create_experiment("mlflow-run")
    config = str(demo / "compute-backend-config-slurm.json")
    ok = submitted_run_id(
        mlflow_run(
            demo, "--backend-config", config, "-P", "alpha=0.25", "--experiment-id", experiment
        )
    )
    failing = submitted_run_id(
        mlflow_run(demo, "--backend-config", config, "-e", "fail", "--experiment-id", experiment)
    )
    assert final_status(ok) == "FINISHED"
    assert final_status(failing) == "FAILED"
    run = mlflow.get_run(ok)
    assert run.data.params["alpha"] == "0.25"
    assert run.data.tags["mlflow.project.backend"] == "mantik"
    assert "r2" in run.data.metrics


def test_projects_run_synchronous_raises_on_failure(
    sqlite_platform: PlatformProcess, monkeypatch: pytest.MonkeyPatch, demo: Path
) -> None:
    sign_in(monkeypatch, sqlite_platform)
    experiment = mlflow.create_experiment("projects-run-sync")
    config = str(demo / "compute-backend-config.json")
    done = mlflow.projects.run(
        str(demo),
        backend="mantik",
        backend_config=config,
        experiment_id=experiment,
        synchronous=True,
    )
    assert done.get_status() == "FINISHED"
    with pytest.raises(mlflow.exceptions.ExecutionException, match="failed"):
        mlflow.projects.run(
            str(demo),
            entry_point="fail",
            backend="mantik",
            backend_config=config,
            experiment_id=experiment,
            synchronous=True,
        )


def test_bad_backend_config_is_a_clear_error(
    sqlite_platform: PlatformProcess, monkeypatch: pytest.MonkeyPatch, demo: Path, tmp_path: Path
) -> None:
    sign_in(monkeypatch, sqlite_platform)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"Resources": {"Runtime": "forever"}}))
    result = mlflow_run(demo, "--backend-config", str(bad))
    assert result.returncode != 0
    assert "Runtime" in result.stderr


def test_projects_run_async_cancel(
    sqlite_platform: PlatformProcess, monkeypatch: pytest.MonkeyPatch, demo: Path
) -> None:
    sign_in(monkeypatch, sqlite_platform)
    experiment = mlflow.create_experiment("projects-run")
    submitted = mlflow.projects.run(
        str(demo),
        entry_point="sleep",
        parameters={"seconds": 300},
        backend="mantik",
        backend_config=str(demo / "compute-backend-config.json"),
        experiment_id=experiment,
        synchronous=False,
    )
    deadline = time.monotonic() + 60
    while submitted.get_status() != "RUNNING":
        assert time.monotonic() < deadline
        time.sleep(0.5)
    submitted.cancel()
    assert submitted.get_status() == "KILLED"
    assert submitted.wait() is False
    assert mlflow.get_run(submitted.run_id).info.status == "KILLED"
