"""Submissions that fail, and platforms that crash while submitting: every job a site
accepted has a record, and nothing half-made is left behind (issue 15, items 1, 2 and 5).

A crash between the site's answer and the record is reproduced by putting the record in the
state such a crash leaves (no job id, the mark of a process that is gone): killing the
platform inside that window of microseconds cannot be timed from outside.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import mlflow
import pytest
from mlflow.tracking import MlflowClient

import mantik
from mantik.server.models import ComputeJob, utcnow
from tests.compute_e2e.conftest import sign_in
from tests.support.offline_job import wait_for
from tests.support.platform import PlatformProcess, start_platform, unique
from tests.support.projects import zipped
from tests.support.services import require_slurm

_DEAD_MARK = "{host}_999999999_1"  # a pid no Linux hands out


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PlatformProcess]:
    """A platform whose local site grants at most an hour, polling fast."""
    data_dir = tmp_path_factory.mktemp("faults")
    sites = data_dir.parent / "faults-sites.yaml"
    sites.write_text("sites:\n  - name: short\n    driver: local\n    max_runtime: 1h\n")
    env = {"MANTIK_SITES_FILE": str(sites), "MANTIK_POLL_SECONDS": "0.5"}
    with start_platform(data_dir, env=env, workers=1) as process:
        yield process


def _bearer(platform: PlatformProcess, user: tuple[str, str]) -> dict[str, str]:
    return {"Authorization": f"Bearer {platform.access_token(user)}"}


def _post(
    platform: PlatformProcess,
    user: tuple[str, str],
    experiment: str,
    project: Path,
    **fields: str,
) -> httpx.Response:
    return httpx.post(
        f"{platform.url}/compute-backend/submit/{experiment}",
        data=fields,
        files={"mlproject_zip": ("p.zip", zipped(project), "application/zip")},
        headers=_bearer(platform, user),
        timeout=60,
    )


def _no_runs(experiment: str) -> None:
    assert mlflow.search_runs([experiment], run_view_type=3, output_format="list") == []
    assert mantik.ComputeBackendClient.from_env().list_runs(experiment_id=experiment) == []


@pytest.mark.parametrize("runtime", [1000000000000, "100000000d", 1e308, "367d"])
def test_a_runtime_no_site_grants_is_refused_before_a_run_exists(
    platform: PlatformProcess,
    monkeypatch: pytest.MonkeyPatch,
    make_project: Callable[..., Path],
    runtime: object,
) -> None:
    user = sign_in(monkeypatch, platform)
    experiment = mlflow.create_experiment(unique("runtime"))
    config = {"ComputeSite": "local", "Resources": {"Runtime": runtime}}
    project = make_project("true", config)
    answer = _post(platform, user, experiment, project, backend_config=json.dumps(config))
    assert answer.status_code == 400, answer.text
    assert "at most 366 days" in answer.json()["detail"]
    with pytest.raises(mantik.ConfigurationError, match="at most 366 days"):
        mantik.ComputeBackendClient.from_env().submit_run(experiment, {}, project, "backend.json")
    _no_runs(experiment)


def test_a_runtime_over_the_site_limit_names_the_limit(
    platform: PlatformProcess, monkeypatch: pytest.MonkeyPatch, make_project: Callable[..., Path]
) -> None:
    user = sign_in(monkeypatch, platform)
    experiment = mlflow.create_experiment(unique("site-limit"))
    project = make_project("true", {"ComputeSite": "short", "Resources": {"Runtime": "2h"}})
    answer = _post(platform, user, experiment, project, unicore_backend_config_path="backend.json")
    assert answer.status_code == 400, answer.text
    assert answer.json()["detail"] == (
        "Resources.Runtime 2h is more than site 'short' grants: at most 1h."
    )
    _no_runs(experiment)


@pytest.mark.parametrize(
    "name", ["$(id)", "a\nb", "x" * 300, "../up", "nul\u0000here", "spaces are fine\u2028no"]
)
def test_parameters_mlflow_refuses_are_refused_before_a_run_exists(
    platform: PlatformProcess,
    monkeypatch: pytest.MonkeyPatch,
    make_project: Callable[..., Path],
    name: str,
) -> None:
    user = sign_in(monkeypatch, platform)
    experiment = mlflow.create_experiment(unique("params"))
    project = make_project("true", {"ComputeSite": "local"})
    answer = _post(
        platform,
        user,
        experiment,
        project,
        unicore_backend_config_path="backend.json",
        mlflow_parameters=json.dumps({name: "1"}),
    )
    assert answer.status_code == 400, answer.text
    detail = answer.json()["detail"]
    assert detail.startswith("Parameter"), detail
    assert len(detail) < 1000
    _no_runs(experiment)


def _crash_after_the_site_answered(platform: PlatformProcess, run_id: str) -> None:
    """Make the record what a crash right after the site's answer leaves."""
    mark = _DEAD_MARK.format(host=os.uname().nodename)
    with platform.compute_service().db.session() as session:
        row = session.get(ComputeJob, run_id)
        assert row is not None
        row.job_id, row.handover_by = None, mark


def _wait_for(check: Callable[[], bool], timeout: float = 60) -> None:
    wait_for("the platform", check, timeout, 0.25)


def _record(platform: PlatformProcess, run_id: str) -> ComputeJob:
    with platform.compute_service().db.session() as session:
        row = session.get(ComputeJob, run_id)
        assert row is not None
        return row


@pytest.mark.parametrize("site", ["local", "slurm"])
def test_a_job_whose_record_lost_its_id_is_adopted(
    platform: PlatformProcess,
    monkeypatch: pytest.MonkeyPatch,
    make_project: Callable[..., Path],
    site: str,
) -> None:
    if site == "slurm":
        require_slurm()
    sign_in(monkeypatch, platform)
    experiment = mlflow.create_experiment(unique("adopt"))
    config = {"ComputeSite": site, "Resources": {"Runtime": "5m"}}
    project = make_project("sleep 8; echo adopted", config)
    client = mantik.ComputeBackendClient.from_env()
    submitted = client.submit_run(experiment, {}, project, "backend.json")
    _crash_after_the_site_answered(platform, submitted.run_id)
    _wait_for(lambda: _record(platform, submitted.run_id).job_id == submitted.job_id)
    assert _record(platform, submitted.run_id).handover_by is None
    info = client.wait(submitted.run_id, timeout=120, interval=0.5)
    assert (info.run_status, info.exit_code) == ("FINISHED", 0)
    assert "adopted" in client.get_logs(submitted.run_id)


def test_a_hand_over_that_never_reached_the_site_ends_failed(
    platform: PlatformProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    sign_in(monkeypatch, platform)
    experiment = mlflow.create_experiment(unique("never"))
    service = platform.compute_service()
    run = service.runs.create(experiment, run_name=None, tags={}, params={})
    run_id = run.info.run_id
    token, _ = service.tokens.issue("nobody", "job", 600, run_id=run_id)
    with service.db.session() as session:
        session.add(
            ComputeJob(
                run_id=run_id,
                experiment_id=experiment,
                username="nobody",
                site="local",
                job_id=None,
                handover_by=_DEAD_MARK.format(host=os.uname().nodename),
                state="SUBMITTED",
                entry_point="main",
                workdir=str(platform.jobs_dir / "local" / run_id),
                token_id=service.tokens.verify(token).token_id,
                token_expires_at=utcnow() + timedelta(seconds=600),
            )
        )
    _wait_for(lambda: _record(platform, run_id).state == "FAILED")
    assert "before the site accepted the job" in (_record(platform, run_id).reason or "")
    ended = MlflowClient(platform.url).get_run(run_id)
    assert ended.info.status == "FAILED"
    assert service.identity.is_revoked(service.tokens.verify(token).token_id)


def test_a_failed_hand_over_leaves_nothing(
    platform: PlatformProcess, monkeypatch: pytest.MonkeyPatch, make_project: Callable[..., Path]
) -> None:
    """The site refuses the job: no record, no run, no folder, and its token is void."""
    require_slurm()
    sign_in(monkeypatch, platform)
    experiment = mlflow.create_experiment(unique("refused"))
    config = {"ComputeSite": "slurm", "Resources": {"Queue": "no-such-partition"}}
    project = make_project("true", config)
    before = set((platform.jobs_dir / "slurm").glob("*"))
    with pytest.raises(mantik.PlatformError, match="SLURM refused the job"):
        mantik.ComputeBackendClient.from_env().submit_run(experiment, {}, project, "backend.json")
    _no_runs(experiment)
    assert set((platform.jobs_dir / "slurm").glob("*")) == before
    with platform.compute_service().db.session() as session:
        assert session.query(ComputeJob).filter_by(experiment_id=experiment).count() == 0


def test_crash_leftovers_are_swept_at_start_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, make_project: Callable[..., Path]
) -> None:
    """What a killed platform leaves (uploads, staging folders, MLflow's partial artifacts,
    a run created for a submission that never got a record) and folders of jobs past their
    retention are gone after a restart; what a live process works on stays."""
    data_dir = tmp_path / "platform"
    data_dir.mkdir()
    env = {"MANTIK_POLL_SECONDS": "0.5", "MANTIK_JOB_RETENTION_DAYS": "30"}
    project = make_project("echo kept in the run", {"ComputeSite": "local"})
    with start_platform(data_dir, env=env, workers=1) as first:
        sign_in(monkeypatch, first)
        experiment = mlflow.create_experiment("leftovers")
        client = mantik.ComputeBackendClient.from_env()
        old = client.submit_run(experiment, {}, project, "backend.json")
        assert client.wait(old.run_id, timeout=60, interval=0.5).run_status == "FINISHED"
        service = first.compute_service()
        half_made = service.runs.client.create_run(
            experiment,
            start_time=int((time.time() - 3600) * 1000),
            tags={"mlflow.project.backend": "mantik"},
        ).info.run_id
        service.runs.client.update_run(half_made, status="SCHEDULED")
        with service.db.session() as session:
            row = session.get(ComputeJob, old.run_id)
            assert row is not None and row.finished_at is not None
            row.finished_at -= timedelta(days=31)
    old_folder = first.jobs_dir / "local" / old.run_id
    assert old_folder.is_dir()

    host = os.uname().nodename
    dead, alive = f"{host}_999999999_1", _mark_of_this_process()
    upload = data_dir / f"upload-{dead}_1a2b3c4d.zip"
    upload.write_bytes(b"PK" + b"\0" * 1000)
    abandoned = data_dir / "staging" / f"{dead}_5e6f"
    (abandoned / "project").mkdir(parents=True)
    (abandoned / "project" / "MLproject").write_text("name: x\n")
    in_use = data_dir / "staging" / f"{alive}_7a8b"
    in_use.mkdir()
    partial = data_dir / "artifacts" / experiment / "x" / ".artifact.uploading.q1w2e3"
    partial.parent.mkdir(parents=True)
    partial.write_bytes(b"half")
    os.utime(partial, (time.time() - 3600, time.time() - 3600))
    fresh_partial = partial.with_name(".artifact.uploading.fresh")
    fresh_partial.write_bytes(b"being written")

    with start_platform(data_dir, env=env, workers=1) as second:
        monkeypatch.setenv("MLFLOW_TRACKING_URI", second.url)
        mantik.init_tracking()
        _wait_for(lambda: not upload.exists() and not abandoned.exists())
        _wait_for(lambda: not partial.exists() and not old_folder.exists())
        _wait_for(lambda: mlflow.get_run(half_made).info.status == "FAILED")
        assert in_use.is_dir() and fresh_partial.exists()
        reason = mlflow.get_run(half_made).data.tags["mantik.job.reason"]
        assert reason == "the platform stopped before the site accepted the job; nothing ran"
        assert mlflow.get_run(old.run_id).info.status == "FINISHED"
        with pytest.raises(mantik.PlatformError, match=r"mantik/job\.log") as gone:
            mantik.ComputeBackendClient.from_env().get_logs(old.run_id)
        assert gone.value.status_code == 410
        kept = mlflow.artifacts.load_text(f"runs:/{old.run_id}/mantik/job.log")
        assert "kept in the run" in kept


def _mark_of_this_process() -> str:
    from mantik.server.compute.leftovers import process_mark

    return process_mark()


def test_a_platform_killed_while_unpacking_leaves_nothing_after_restart(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, make_project: Callable[..., Path]
) -> None:
    """SIGKILL of the whole platform while it unpacks a large project: the upload and the
    staging folder stay on disk; the restarted platform removes them."""
    data_dir = tmp_path / "platform"
    data_dir.mkdir()
    env = {"MANTIK_POLL_SECONDS": "0.5"}
    project = make_project("true", {"ComputeSite": "local"})
    with (project / "zeros.bin").open("wb") as big:  # compresses 1000:1, unpacks for seconds
        big.truncate(1536 * 1024 * 1024)
    archive = zipped(project)
    with start_platform(data_dir, env=env, workers=1) as first:
        user = sign_in(monkeypatch, first)
        experiment = mlflow.create_experiment("killed")
        headers = _bearer(first, user)

        def submit() -> None:
            with contextlib.suppress(httpx.HTTPError):
                httpx.post(
                    f"{first.url}/compute-backend/submit/{experiment}",
                    data={"unicore_backend_config_path": "backend.json"},
                    files={"mlproject_zip": ("p.zip", archive, "application/zip")},
                    headers=headers,
                    timeout=120,
                )

        sender = threading.Thread(target=submit)
        sender.start()
        wait_for(
            "the platform to start unpacking",
            lambda: any((data_dir / "staging").glob("*/project/zeros.bin")),
            timeout=120,
            interval=0.1,
        )
        os.killpg(first.process.pid, signal.SIGKILL)
        first.process.wait()
        sender.join()
    staging = list((data_dir / "staging").iterdir())
    uploads = list(data_dir.glob("upload-*.zip"))
    assert staging and uploads  # what the crash left

    with start_platform(data_dir, env=env, workers=1) as second:
        wait_for(
            f"the restarted platform to remove {staging + uploads} (log: {second.log_path})",
            lambda: not any(p.exists() for p in [*staging, *uploads]),
            timeout=60,
        )
        monkeypatch.setenv("MLFLOW_TRACKING_URI", second.url)
        mantik.init_tracking()
        assert mlflow.search_runs([experiment], output_format="list") == []
