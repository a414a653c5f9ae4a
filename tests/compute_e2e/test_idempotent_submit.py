"""Idempotent submission (issue 16, item 6): a retry of ``submit_run`` after a lost answer
makes one run and one job, not two; the key is the user's, for one request only."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import mlflow
import pytest
from sqlalchemy import select

import mantik
from mantik.server.models import ComputeJob, SubmissionKey
from tests.compute_e2e.conftest import sign_in
from tests.support.lossy_proxy import lossy_proxy
from tests.support.platform import PlatformProcess, unique
from tests.support.projects import zipped

_CONFIG = {"ComputeSite": "local"}


def _jobs_of(platform: PlatformProcess, experiment: str) -> list[ComputeJob]:
    with platform.compute_service().db.session() as session:
        query = select(ComputeJob).where(ComputeJob.experiment_id == experiment)
        return list(session.scalars(query))


def _post(
    platform: PlatformProcess,
    user: tuple[str, str],
    experiment: str,
    project: Path,
    key: str | None,
    **fields: str,
) -> httpx.Response:
    headers = {"Authorization": f"Bearer {platform.access_token(user)}"}
    if key is not None:
        headers["Idempotency-Key"] = key
    return httpx.post(
        f"{platform.url}/compute-backend/submit/{experiment}",
        data={"backend_config": json.dumps(_CONFIG), **fields},
        files={"mlproject_zip": ("p.zip", zipped(project), "application/zip")},
        headers=headers,
        timeout=60,
    )


def test_a_retry_after_a_lost_answer_makes_one_run_and_one_job(
    sqlite_platform: PlatformProcess,
    monkeypatch: pytest.MonkeyPatch,
    make_project: Callable[..., Path],
) -> None:
    sign_in(monkeypatch, sqlite_platform)
    experiment = mlflow.create_experiment(unique("lost-answer"))
    project = make_project("echo trained", _CONFIG)
    port = urlsplit(sqlite_platform.url).port
    assert port is not None
    submits_before = sqlite_platform.log_text().count("/compute-backend/submit/")
    with lossy_proxy(port, b"POST /compute-backend/submit/") as proxy:
        client = mantik.ComputeBackendClient(mlflow_tracking_uri=proxy.url)
        submitted = client.submit_run(experiment, {}, project, "backend.json")
        assert proxy.lost == 1  # the platform served the first attempt; its answer was lost
        info = client.wait(submitted.run_id, timeout=120, interval=0.5)
    assert info.run_status == "FINISHED"
    # Two requests reached the platform; one run and one job came of them.
    assert sqlite_platform.log_text().count("/compute-backend/submit/") - submits_before == 2
    runs = mlflow.search_runs([experiment], run_view_type=3, output_format="list")
    assert [run.info.run_id for run in runs] == [submitted.run_id]
    assert [job.run_id for job in _jobs_of(sqlite_platform, experiment)] == [submitted.run_id]


def test_the_same_key_and_request_answer_with_the_first_run(
    platform: PlatformProcess,
    monkeypatch: pytest.MonkeyPatch,
    make_project: Callable[..., Path],
) -> None:
    user = sign_in(monkeypatch, platform)
    experiment = mlflow.create_experiment(unique("replay"))
    project = make_project("true", _CONFIG)
    key = str(uuid.uuid4())
    first = _post(platform, user, experiment, project, key)
    again = _post(platform, user, experiment, project, key)
    assert first.status_code == again.status_code == 201, again.text
    assert again.json() == first.json()
    assert again.headers["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first.headers
    # Another request under the same key is refused, and makes nothing.
    other = _post(platform, user, experiment, project, key, run_name="other")
    assert other.status_code == 422, other.text
    assert "different submission" in other.json()["detail"]
    # Without a key, or with a new one, the same request is a new submission.
    assert _post(platform, user, experiment, project, None).status_code == 201
    assert _post(platform, user, experiment, project, str(uuid.uuid4())).status_code == 201
    assert len(_jobs_of(platform, experiment)) == 3


def test_keys_are_per_user(
    sqlite_platform: PlatformProcess,
    monkeypatch: pytest.MonkeyPatch,
    make_project: Callable[..., Path],
) -> None:
    """Another user's key names nothing of mine: the same key makes their own run."""
    alice = sign_in(monkeypatch, sqlite_platform)
    mine = mlflow.create_experiment(unique("keys-alice"))
    project = make_project("true", _CONFIG)
    key = str(uuid.uuid4())
    first = _post(sqlite_platform, alice, mine, project, key)
    assert first.status_code == 201, first.text
    bob = sign_in(monkeypatch, sqlite_platform)
    theirs = mlflow.create_experiment(unique("keys-bob"))
    answer = _post(sqlite_platform, bob, theirs, project, key)
    assert answer.status_code == 201, answer.text
    assert answer.json()["run_id"] != first.json()["run_id"]
    assert "Idempotent-Replayed" not in answer.headers
    # Bob replaying Alice's request with her key reaches her experiment no more than before.
    assert _post(sqlite_platform, bob, mine, project, key).status_code == 403


@pytest.mark.parametrize("key", ["", "x" * 129, "a b", "ключ", "a/b", "a\tb"])
def test_a_malformed_key_is_refused(
    sqlite_platform: PlatformProcess,
    monkeypatch: pytest.MonkeyPatch,
    make_project: Callable[..., Path],
    key: str,
) -> None:
    user = sign_in(monkeypatch, sqlite_platform)
    experiment = mlflow.create_experiment(unique("bad-key"))
    project = make_project("true", _CONFIG)
    headers = {
        "Authorization": f"Bearer {sqlite_platform.access_token(user)}",
        "Idempotency-Key": key.encode(),
    }
    answer = httpx.post(
        f"{sqlite_platform.url}/compute-backend/submit/{experiment}",
        data={"backend_config": json.dumps(_CONFIG)},
        files={"mlproject_zip": ("p.zip", zipped(project), "application/zip")},
        headers=headers,
        timeout=60,
    )
    assert answer.status_code == 400, answer.text
    assert "Idempotency-Key must be" in answer.json()["detail"]
    assert _jobs_of(sqlite_platform, experiment) == []


def test_a_failed_submission_frees_its_key(
    sqlite_platform: PlatformProcess,
    monkeypatch: pytest.MonkeyPatch,
    make_project: Callable[..., Path],
) -> None:
    user = sign_in(monkeypatch, sqlite_platform)
    experiment = mlflow.create_experiment(unique("freed"))
    project = make_project("true", _CONFIG)
    key = str(uuid.uuid4())
    refused = _post(sqlite_platform, user, experiment, project, key, entry_point="nope")
    assert refused.status_code == 400, refused.text
    again = _post(sqlite_platform, user, experiment, project, key, entry_point="nope")
    assert again.status_code == 400  # refused afresh, not "used for another submission"
    fixed = _post(sqlite_platform, user, experiment, project, key)
    assert fixed.status_code == 201, fixed.text
    assert len(_jobs_of(sqlite_platform, experiment)) == 1


def test_a_submission_still_going_on_answers_409_until_its_claim_is_stale(
    sqlite_platform: PlatformProcess,
    monkeypatch: pytest.MonkeyPatch,
    make_project: Callable[..., Path],
) -> None:
    """A claim with no run yet is a submission in progress (or one whose platform process
    died: given up after 15 minutes)."""
    user = sign_in(monkeypatch, sqlite_platform)
    experiment = mlflow.create_experiment(unique("going-on"))
    project = make_project("true", _CONFIG)
    done_key, going_key = str(uuid.uuid4()), str(uuid.uuid4())
    assert _post(sqlite_platform, user, experiment, project, done_key).status_code == 201
    db = sqlite_platform.compute_service().db
    with db.session() as session:
        done = session.get(SubmissionKey, (user[0], done_key))
        assert done is not None
        # The same request, claimed by a worker that has not finished submitting it.
        session.add(
            SubmissionKey(
                username=user[0],
                key=going_key,
                fingerprint=done.fingerprint,
                created_at=done.created_at,
            )
        )
    answer = _post(sqlite_platform, user, experiment, project, going_key)
    assert answer.status_code == 409, answer.text
    assert "still going on" in answer.json()["detail"]
    assert len(_jobs_of(sqlite_platform, experiment)) == 1
    with db.session() as session:
        row = session.get(SubmissionKey, (user[0], going_key))
        assert row is not None
        row.created_at -= timedelta(minutes=16)
    answer = _post(sqlite_platform, user, experiment, project, going_key)
    assert answer.status_code == 201, answer.text
    assert len(_jobs_of(sqlite_platform, experiment)) == 2
