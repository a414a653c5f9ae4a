"""Offline tracking on UNICORE: the node cannot reach the platform and the platform cannot
read the job's folder by itself — it lies on the site, behind the user's credentials. Each
status request that carries them fetches the job's newest snapshot through UNICORE's file
API (the gateway's, which stands in for UNICORE/X) and syncs it into the central run.

Set MANTIK_TEST_UNICORE_OFFLINE_POINTS to change the size of the main job.
"""

from __future__ import annotations

import math
import os
import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import mlflow
import pytest
from sqlalchemy import update

import mantik
from mantik.server.compute.jobs import SiteCredentials
from mantik.server.models import ComputeJob, OfflineSync, utcnow
from tests.support.offline_job import TRAIN, central_points, count_pushed_points, wait_for
from tests.support.platform import PlatformProcess, free_port, start_platform
from tests.support.unicore_gateway import UnicoreGateway
from tests.unicore.conftest import UNICORE_PASSWORD, UNICORE_USER, sign_in_with_unicore

pytestmark = pytest.mark.slurm
POINTS = int(os.environ.get("MANTIK_TEST_UNICORE_OFFLINE_POINTS", "20000"))
SECONDS = 30.0
KEYS = 10
SNAPSHOT_SECONDS = 2.0


@pytest.fixture(scope="module")
def offline_platform(
    gateway: UnicoreGateway, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[PlatformProcess]:
    data_dir = tmp_path_factory.mktemp("platform-unicore-offline")
    sites = data_dir / "sites.yaml"
    closed = f"http://127.0.0.1:{free_port()}"  # nobody listens: the nodes are "offline"
    sites.write_text(
        f"sites:\n  - name: juwels\n    driver: unicore\n    url: {gateway.base_url}\n"
        f"    tracking_uri: {closed}\n"
    )
    env = {
        "MANTIK_SITES_FILE": str(sites),
        "MANTIK_OFFLINE_SNAPSHOT_SECONDS": str(SNAPSHOT_SECONDS),
        "MANTIK_POLL_SECONDS": "1",
    }
    with start_platform(data_dir, env=env, workers=1) as platform:
        yield platform


@pytest.fixture
def experiment(monkeypatch: pytest.MonkeyPatch, offline_platform: PlatformProcess) -> str:
    return sign_in_with_unicore(monkeypatch, offline_platform)


def _submit(
    make_project: Callable[..., Path], gateway: UnicoreGateway, experiment: str, *args: object
) -> mantik.SubmittedRun:
    config = {
        "UnicoreApiUrl": gateway.base_url,
        "Tracking": "auto",
        "Resources": {"Queue": "debug", "Runtime": "10m"},
    }
    command = "python train.py " + " ".join(str(a) for a in args)
    project = make_project(command, config, {"train.py": TRAIN})
    client = mantik.ComputeBackendClient.from_env()
    return client.submit_run(experiment, {}, project, "backend.json")


def _remote_points(gateway: UnicoreGateway, job_id: str) -> int:
    """Points in the snapshot on the site (the test may look; the platform may not)."""
    snapshot = gateway.job(job_id).workdir / ".mantik" / "offline" / "snapshot.db"
    if not snapshot.exists():
        return 0
    with sqlite3.connect(f"file:{snapshot}?mode=ro", uri=True) as connection:
        return int(connection.execute("SELECT count(*) FROM metrics").fetchone()[0])


def test_offline_unicore_job_is_synced_while_followed_and_exactly_once(
    experiment: str,
    gateway: UnicoreGateway,
    offline_platform: PlatformProcess,
    make_project: Callable[..., Path],
) -> None:
    submitted = _submit(make_project, gateway, experiment, POINTS, SECONDS, KEYS)
    run_id, job_id = submitted.run_id, submitted.job_id
    client = mantik.ComputeBackendClient.from_env()

    # Nobody asks with credentials: the job logs, the platform cannot see it.
    wait_for("a snapshot on the site", lambda: _remote_points(gateway, job_id) > 0, 120)
    time.sleep(2 * SNAPSHOT_SECONDS)
    assert central_points(run_id) == 0

    # Following the run (status requests with credentials) syncs it live.
    seen, lags = [], []
    for _ in range(4):
        info = client.get_status(run_id)
        time.sleep(SNAPSHOT_SECONDS + 1)  # the sync runs after the response
        seen.append(central_points(run_id))
        lags.append(client.get_status(run_id).sync_lag_seconds)
    print(f"central points, followed every {SNAPSHOT_SECONDS + 1:g} s: {seen}; lags: {lags}")
    assert info.state == "RUNNING" and info.tracking == "offline"
    assert seen == sorted(set(seen)) and seen[0] > 0, f"no new points while followed: {seen}"
    assert all(lag is not None and lag <= 4 * SNAPSHOT_SECONDS + 5 for lag in lags), lags

    info = client.wait(run_id, timeout=SECONDS + 180, interval=1)
    assert (info.run_status, info.exit_code) == ("FINISHED", 0), client.get_logs(run_id)
    run = mlflow.get_run(run_id)
    assert central_points(run_id) == POINTS + 1  # + the NaN point
    history = mlflow.MlflowClient().get_metric_history(run_id, "m7")
    assert sorted(m.step for m in history) == list(range(POINTS // KEYS))
    assert all(m.value == m.step + 0.7 for m in history)
    assert math.isnan(run.data.metrics["odd"])
    assert run.data.params["lr"] == "0.01" and run.data.tags["team"] == "vision"
    assert run.info.status == "FINISHED"
    artifacts = mlflow.MlflowClient()
    assert {a.path for a in artifacts.list_artifacts(run_id, "notes")} == {"notes/summary.txt"}
    log = Path(artifacts.download_artifacts(run_id, "mantik/job.log")).read_text()
    assert "tracking offline" in log and "trained" in log  # fetched from the site at the end
    models = mlflow.search_logged_models(experiment_ids=[experiment], output_format="list")
    assert [(m.name, m.source_run_id, m.status.value) for m in models] == [
        ("echo", run_id, "READY")
    ]
    # log_model linked the run's step-0 points to the model long after they were synced
    linked = {(m.key, m.step) for m in models[0].metrics or []}
    assert linked == {(f"m{k}", 0) for k in range(KEYS)} | {("odd", 0)}
    children = mlflow.search_runs(
        [experiment], filter_string=f"tags.mlflow.parentRunId = '{run_id}'", output_format="list"
    )
    assert [(c.info.run_name, c.data.metrics) for c in children] == [
        ("evaluation", {"score": 0.75})
    ]
    assert client.get_status(run_id).sync_lag_seconds is None  # all synced
    mirror = offline_platform.jobs_dir / "juwels" / run_id / ".mantik"
    assert (mirror / "tracking").is_file() and not (mirror / "offline").exists()  # cleaned up

    # A second full sync through the file API (as if the platform had forgotten which
    # snapshot it read) adds nothing.
    service = offline_platform.compute_service()
    with service.db.session() as session:
        session.execute(
            update(OfflineSync)
            .where(OfflineSync.run_id == run_id)
            .values(snapshot_mtime_ns=None, final_at=None)
        )
        job = session.get(ComputeJob, run_id)
    assert job is not None
    pushed = count_pushed_points(service.runs.client)
    credentials = SiteCredentials(UNICORE_USER, UNICORE_PASSWORD)
    service.offline.sync(job, final=True, wait=True, status="FINISHED", credentials=credentials)
    assert sum(pushed) == 0
    assert central_points(run_id) == POINTS + 1
    assert len(mlflow.search_runs([experiment], output_format="list")) == 2

    # The credentials went through the platform's hands only: not into its folders.
    roots = (offline_platform.data_dir, offline_platform.jobs_dir)
    files = [p for root in roots for p in root.rglob("*") if p.is_file()]
    assert not [p for p in files if UNICORE_PASSWORD.encode() in p.read_bytes()]
    assert UNICORE_PASSWORD not in offline_platform.log_text()


def test_a_run_called_lost_is_completed_when_its_owner_asks(
    experiment: str,
    gateway: UnicoreGateway,
    offline_platform: PlatformProcess,
    make_project: Callable[..., Path],
) -> None:
    """Offline on UNICORE and never followed: when the job token expires the run is LOST
    (FAILED); the next status request with credentials finds the job ended well, syncs
    what it logged and finishes the run."""
    submitted = _submit(make_project, gateway, experiment, 200, 1, KEYS)
    ended = gateway.wait_for(submitted.job_id, timeout=180)
    assert ended.status == "SUCCESSFUL", (ended.status_message, ended.log)
    _expire_token(offline_platform, submitted.run_id)
    wait_for("LOST", lambda: mlflow.get_run(submitted.run_id).info.status == "FAILED", 30)
    assert mlflow.get_run(submitted.run_id).data.tags["mantik.job.state"] == "LOST"
    assert central_points(submitted.run_id) == 0

    info = mantik.ComputeBackendClient.from_env().get_status(submitted.run_id)
    assert (info.state, info.run_status) == ("COMPLETED", "FINISHED")
    run = mlflow.get_run(submitted.run_id)
    assert run.info.status == "FINISHED" and run.data.tags["mantik.job.state"] == "COMPLETED"
    assert central_points(submitted.run_id) == 201


def test_a_lost_run_whose_job_the_site_forgot_stays_lost_without_errors(
    experiment: str,
    gateway: UnicoreGateway,
    offline_platform: PlatformProcess,
    make_project: Callable[..., Path],
) -> None:
    submitted = _submit(make_project, gateway, experiment, 10, 0, KEYS)
    gateway.wait_for(submitted.job_id, timeout=180)
    deleted = httpx.delete(
        gateway.job_url(submitted.job_id), auth=(UNICORE_USER, UNICORE_PASSWORD), timeout=30
    )
    assert deleted.status_code in (200, 204)
    _expire_token(offline_platform, submitted.run_id)
    wait_for("LOST", lambda: mlflow.get_run(submitted.run_id).info.status == "FAILED", 30)

    info = mantik.ComputeBackendClient.from_env().get_status(submitted.run_id)
    assert (info.state, info.run_status) == ("LOST", "FAILED")


def _expire_token(platform: PlatformProcess, run_id: str) -> None:
    """As if a week had passed since the job was submitted and nobody asked about it."""
    with platform.compute_service().db.session() as session:
        session.execute(
            update(ComputeJob)
            .where(ComputeJob.run_id == run_id)
            .values(token_expires_at=utcnow(), submitted_at=utcnow().replace(year=2025))
        )
