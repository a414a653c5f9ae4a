"""`mantik project init` scaffolds a project that passes `config check` and runs as generated."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest

import mantik
from tests.compute_e2e.conftest import sign_in
from tests.support.platform import PlatformProcess


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mantik.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ},
    )


def test_scaffold_runs_on_the_local_site(
    sqlite_platform: PlatformProcess, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    created = cli("project", "init", "hello", cwd=tmp_path)
    assert created.returncode == 0, created.stderr
    project = tmp_path / "hello"
    for name in (
        "MLproject",
        "train.py",
        "compute-backend-config.json",
        "compute-backend-config.yaml",
        "Dockerfile",
        "image.def",
    ):
        assert (project / name).is_file(), name
    for config in ("compute-backend-config.json", "compute-backend-config.yaml"):
        checked = cli("config", "check", config, cwd=project)
        assert checked.returncode == 0, checked.stderr

    sign_in(monkeypatch, sqlite_platform)
    experiment = mlflow.create_experiment("scaffold")
    client = mantik.ComputeBackendClient.from_env()
    submitted = client.submit_run(experiment, {"epochs": 3}, project, "compute-backend-config.yaml")
    info = client.wait(submitted.run_id, timeout=180, interval=0.5)
    assert info.run_status == "FINISHED", client.get_logs(submitted.run_id)
    history = mlflow.MlflowClient().get_metric_history(submitted.run_id, "loss")
    assert [m.step for m in history] == [0, 1, 2]


def test_init_refuses_a_non_empty_folder(tmp_path: Path) -> None:
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "file").write_text("x")
    result = cli("project", "init", "taken", cwd=tmp_path)
    assert result.returncode == 1
    assert "not empty" in result.stderr and "Traceback" not in result.stderr


def test_version_prints_the_package_version() -> None:
    import subprocess
    import sys

    from mantik import __version__

    result = subprocess.run(
        [sys.executable, "-m", "mantik.cli", "--version"], capture_output=True, text=True
    )
    assert (result.returncode, result.stdout.strip()) == (0, f"mantik {__version__}")
