"""The embedded ``local`` site, on SQLite and PostgreSQL; restarts; secrets."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import mlflow
import pytest

import mantik
from tests.compute_e2e.conftest import sign_in
from tests.support.platform import PlatformProcess, start_platform
from tests.support.services import require_slurm


def test_demo_on_the_local_site(
    platform: PlatformProcess, monkeypatch: pytest.MonkeyPatch, demo: Path
) -> None:
    sign_in(monkeypatch, platform)
    experiment = mlflow.create_experiment("local-demo")
    client = mantik.ComputeBackendClient.from_env()
    submitted = client.submit_run(
        experiment_id=experiment,
        mlflow_parameters={"alpha": 0.7, "l1_ratio": 0.2},
        mlproject_path=demo,
        backend_config_path="compute-backend-config.json",
        run_name="local demo",
    )
    assert submitted.site == "local"
    info = client.wait(submitted.run_id, timeout=180, interval=0.5)
    assert info.run_status == "FINISHED", client.get_logs(submitted.run_id)
    run = mlflow.get_run(submitted.run_id)
    assert run.info.run_name == "local demo"
    assert run.data.params["l1_ratio"] == "0.2"
    assert "r2" in run.data.metrics
    listed = client.list_runs(experiment_id=experiment)
    assert [r.run_id for r in listed] == [submitted.run_id]
    assert client.list_runs(experiment_id=experiment, state="RUNNING") == []


def test_parameters_are_validated_before_upload(
    sqlite_platform: PlatformProcess, monkeypatch: pytest.MonkeyPatch, demo: Path
) -> None:
    sign_in(monkeypatch, sqlite_platform)
    experiment = mlflow.create_experiment("validation")
    client = mantik.ComputeBackendClient.from_env()
    uploads = sqlite_platform.log_text().count("/compute-backend/submit/")
    with pytest.raises(mantik.ConfigurationError, match="alpha"):
        client.submit_run(
            experiment, {"alpha": "not-a-number"}, demo, "compute-backend-config.json"
        )
    with pytest.raises(mantik.ConfigurationError, match="outside"):
        client.submit_run(experiment, {}, demo, "../elsewhere.json")
    (demo / "typo.json").write_text('{"Resources": {"Memmory": "1G"}}')
    with pytest.raises(mantik.ConfigurationError, match="did you mean 'Memory'"):
        client.submit_run(experiment, {}, demo, "typo.json")
    assert sqlite_platform.log_text().count("/compute-backend/submit/") == uploads


def test_other_users_cannot_submit_or_see(
    sqlite_platform: PlatformProcess, monkeypatch: pytest.MonkeyPatch, demo: Path
) -> None:
    sign_in(monkeypatch, sqlite_platform)
    experiment = mlflow.create_experiment("owned")
    owner = mantik.ComputeBackendClient.from_env()
    submitted = owner.submit_run(experiment, {}, demo, "compute-backend-config.json")
    sign_in(monkeypatch, sqlite_platform)  # another user now
    intruder = mantik.ComputeBackendClient.from_env()
    with pytest.raises(mantik.PlatformError) as refused:
        intruder.submit_run(experiment, {}, demo, "compute-backend-config.json")
    assert refused.value.status_code == 403
    for call in (intruder.get_status, intruder.get_logs, intruder.cancel):
        with pytest.raises(mantik.PlatformError) as hidden:
            call(submitted.run_id)
        assert hidden.value.status_code == 403
    assert intruder.list_runs() == []
    owner.wait(submitted.run_id, timeout=180, interval=0.5)


def test_final_status_lands_after_a_platform_restart(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, make_project: Callable[..., Path]
) -> None:
    """The platform is down when the job ends: the wrapper cannot report, the poller can."""
    require_slurm()
    data_dir = tmp_path / "platform"
    data_dir.mkdir()
    config = {"ComputeSite": "slurm", "Resources": {"Runtime": "5m"}}
    project = make_project("sleep 6; echo done", config)
    with start_platform(data_dir) as first:
        sign_in(monkeypatch, first)
        experiment = mlflow.create_experiment("restart")
        submitted = mantik.ComputeBackendClient.from_env().submit_run(
            experiment, {}, project, "backend.json"
        )
    time.sleep(10)  # the job ends while no platform runs
    with start_platform(data_dir) as second:
        monkeypatch.setenv("MLFLOW_TRACKING_URI", second.url)
        mantik.init_tracking()
        client = mantik.ComputeBackendClient.from_env()
        info = client.wait(submitted.run_id, timeout=60, interval=0.5)
        assert (info.run_status, info.exit_code) == ("FINISHED", 0)
        assert mlflow.get_run(submitted.run_id).info.status == "FINISHED"
        assert "done" in client.get_logs(submitted.run_id)


def test_no_secret_reaches_the_job(
    sqlite_platform: PlatformProcess,
    monkeypatch: pytest.MonkeyPatch,
    make_project: Callable[..., Path],
) -> None:
    _, password = sign_in(monkeypatch, sqlite_platform)
    monkeypatch.setenv("MANTIK_UNICORE_PASSWORD", "unicore-Secret-9")
    experiment = mlflow.create_experiment("secrets")
    project = make_project("env; cat /proc/self/cmdline", {"ComputeSite": "local"})
    client = mantik.ComputeBackendClient.from_env()
    submitted = client.submit_run(experiment, {}, project, "backend.json")
    assert client.wait(submitted.run_id, timeout=120, interval=0.5).run_status == "FINISHED"
    log = client.get_logs(submitted.run_id)
    assert "MLFLOW_RUN_ID=" + submitted.run_id in log  # the job really saw its environment
    flask_secret = sqlite_platform.shared_secret("flask-secret")
    secrets = [password, "unicore-Secret-9", flask_secret, "MLFLOW_FLASK_SERVER_SECRET_KEY"]
    workdir = sqlite_platform.jobs_dir / "local" / submitted.run_id
    files = [p for p in workdir.rglob("*") if p.is_file() and p.name != "job-token"]
    assert files
    run = mlflow.get_run(submitted.run_id)
    texts = [log, sqlite_platform.log_text(), str(run.data.params), str(run.data.tags)]
    texts += [p.read_text(errors="replace") for p in files]
    for secret in secrets:
        assert not any(secret in text for text in texts), secret
    token_file = workdir / ".mantik" / "job-token"
    assert oct(token_file.stat().st_mode & 0o777) == "0o600"
    # The job token in the job's environment ends with the job (within the 5 s recheck).
    token = next(
        line.split("=", 1)[1]
        for line in log.splitlines()
        if line.startswith("MLFLOW_TRACKING_TOKEN=")
    )
    deadline = time.monotonic() + 15
    while True:
        status = subprocess.run(
            [
                "curl",
                "-s",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "-H",
                f"Authorization: Bearer {token}",
                f"{sqlite_platform.url}/api/2.0/mlflow/runs/get?run_id={submitted.run_id}",
            ],
            capture_output=True,
            text=True,
            env={"PATH": os.environ["PATH"]},
        ).stdout
        if status == "401" or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert status == "401"
