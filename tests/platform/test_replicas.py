"""Two replicas of the platform, as two hosts run them: one PostgreSQL, one artifact store,
one jobs folder (a shared filesystem), and each its own data folder.

Before, every replica signed with its own key file (a token from A was refused at B), a
sign-out or a grant reached the other replica only when its caches expired (an access token
kept working for its 60 minutes), and each replica polled every site itself.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import signal
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import jwt
import mlflow
import pytest
from mlflow import MlflowClient

import mantik
from tests.support.platform import PlatformProcess, free_port, share_experiment, start_platform
from tests.support.services import postgres_uris, require_slurm

API = "/api/2.0/mlflow"
SEARCH = f"{API}/experiments/search"


@dataclass
class Replicas:
    a: PlatformProcess
    b: PlatformProcess

    @property
    def both(self) -> tuple[PlatformProcess, PlatformProcess]:
        return self.a, self.b


def _shared_state(root: Path, name: str) -> dict[str, str]:
    """What the replicas share: the databases, the artifact store, the jobs folder."""
    jobs = Path(tempfile.mkdtemp(prefix="mantik-test-jobs-"))  # reachable by job accounts
    jobs.chmod(0o711)
    atexit.register(shutil.rmtree, jobs, ignore_errors=True)
    artifacts = root / "artifacts"
    artifacts.mkdir()
    return {
        **postgres_uris(f"{name}_{os.getpid()}"),
        "MANTIK_JOBS_DIR": str(jobs),
        "MANTIK_ARTIFACTS_DESTINATION": str(artifacts),
        "MANTIK_POLL_SECONDS": "1",
        # The balancer's address in production: the issuer of every replica's tokens.
        "MANTIK_PUBLIC_URL": "http://mantik-replicas.test",
    }


@contextmanager
def two_replicas(root: Path, name: str) -> Iterator[Replicas]:
    shared = _shared_state(root, name)
    with ExitStack() as stack:
        hosts = []
        for host in ("host-a", "host-b"):
            (root / host).mkdir()
            port = free_port()
            # Jobs report to their own replica (no balancer in this test).
            env = {**shared, "MANTIK_JOB_TRACKING_URI": f"http://127.0.0.1:{port}"}
            platform = start_platform(root / host, env=env, workers=1, port=port)
            hosts.append(stack.enter_context(platform))
        yield Replicas(*hosts)


@pytest.fixture(scope="module")
def replicas(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Replicas]:
    with two_replicas(tmp_path_factory.mktemp("replicas"), "replicas") as pair:
        yield pair


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _search(platform: PlatformProcess, token: str) -> int:
    response = httpx.get(platform.url + SEARCH, params={"max_results": 1}, headers=_bearer(token))
    return response.status_code


def test_a_token_from_a_tracks_at_b_and_artifacts_cross_over(
    replicas: Replicas, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    user = replicas.a.new_user("replica")
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", replicas.a.access_token(user))
    at_a, at_b = (MlflowClient(tracking_uri=p.url) for p in replicas.both)
    experiment = at_b.create_experiment(f"replicas-{uuid.uuid4().hex[:8]}")
    run = at_b.create_run(experiment)
    at_b.log_metric(run.info.run_id, "loss", 0.25)
    upload = tmp_path / "weights.bin"
    upload.write_bytes(os.urandom(256 * 1024))
    at_a.log_artifact(run.info.run_id, str(upload))
    downloaded = at_b.download_artifacts(run.info.run_id, "weights.bin", str(tmp_path / "dl"))
    assert Path(downloaded).read_bytes() == upload.read_bytes()
    assert at_a.get_run(run.info.run_id).data.metrics == {"loss": 0.25}


def test_signing_out_at_a_ends_the_token_at_b_at_the_next_request(replicas: Replicas) -> None:
    user = replicas.a.new_user("signout")
    tokens = httpx.post(
        f"{replicas.a.url}/api/mantik/tokens/create",
        json={"username": user[0], "password": user[1]},
    ).json()
    assert _search(replicas.b, tokens["AccessToken"]) == 200  # B has verified and cached it
    revoked = httpx.post(
        f"{replicas.a.url}/api/mantik/tokens/revoke",
        json={"username": user[0], "refresh_token": tokens["RefreshToken"]},
    )
    assert revoked.status_code == 204, revoked.text
    assert _search(replicas.b, tokens["AccessToken"]) == 401
    assert _search(replicas.a, tokens["AccessToken"]) == 401


def test_a_grant_at_a_counts_at_b_at_once(replicas: Replicas) -> None:
    alice = replicas.a.client(replicas.a.new_user("owner"))
    bob_user = replicas.a.new_user("reader")
    bob_at_b = replicas.b.client(bob_user)
    experiment = alice.post(
        f"{API}/experiments/create", json={"name": f"shared-{uuid.uuid4().hex[:8]}"}
    ).json()["experiment_id"]
    get = (f"{API}/experiments/get", {"experiment_id": experiment})
    assert bob_at_b.get(get[0], params=get[1]).status_code == 403  # B caches the refusal
    granted = share_experiment(alice, experiment, bob_user[0])
    assert granted.status_code == 200, granted.text
    assert bob_at_b.get(get[0], params=get[1]).status_code == 200


def test_a_slurm_job_submitted_at_a_finishes_at_b(
    replicas: Replicas, monkeypatch: pytest.MonkeyPatch, make_project: Callable[..., Path]
) -> None:
    require_slurm()
    user = replicas.a.new_user("slurm", os_account=True)
    monkeypatch.setenv("MANTIK_USERNAME", user[0])
    monkeypatch.setenv("MANTIK_PASSWORD", user[1])
    monkeypatch.setenv("MLFLOW_TRACKING_URI", replicas.a.url)
    mantik.init_tracking()
    experiment = mlflow.create_experiment(f"replica-slurm-{uuid.uuid4().hex[:8]}")
    config = {"ComputeSite": "slurm", "Resources": {"Runtime": "10m", "Queue": "debug"}}
    project = make_project("echo trained on the other replica", config)
    submitted = mantik.ComputeBackendClient.from_env().submit_run(
        experiment, {}, project, "backend.json"
    )
    monkeypatch.setenv("MLFLOW_TRACKING_URI", replicas.b.url)
    mantik.init_tracking()
    at_b = mantik.ComputeBackendClient.from_env()
    info = at_b.wait(submitted.run_id, timeout=180, interval=0.5)
    assert (info.state, info.run_status, info.exit_code) == ("COMPLETED", "FINISHED", 0)
    assert mlflow.get_run(submitted.run_id).info.status == "FINISHED"
    assert "trained on the other replica" in at_b.get_logs(submitted.run_id)


def _kid(token: str) -> str:
    return str(jwt.get_unverified_header(token)["kid"])


def _published(platform: PlatformProcess) -> set[str]:
    keys = httpx.get(f"{platform.url}/.well-known/jwks.json").json()["keys"]
    return {key["kid"] for key in keys}


def test_a_key_rotation_keeps_old_tokens_and_signs_new_ones_with_the_new_key(
    replicas: Replicas,
) -> None:
    user = replicas.a.new_user("rotate")
    old = replicas.a.access_token(user)
    assert _search(replicas.b, old) == 200
    rotated = replicas.a.admin("keys", "rotate").stdout
    new = replicas.b.access_token(user)
    assert _kid(new) != _kid(old)
    assert f"New signing key {_kid(new)}." in rotated
    assert f"Key {_kid(old)} verifies until" in rotated
    for platform in replicas.both:
        assert _published(platform) == {_kid(old), _kid(new)}
        assert _search(platform, old) == 200
        assert _search(platform, new) == 200
    listed = json.loads(replicas.b.admin("keys", "list", "--json").stdout)
    states = {key["kid"]: key["state"] for key in listed}
    assert states == {_kid(new): "signs", _kid(old): "verifies only"}
    assert _kid(new) in replicas.b.admin("keys", "list").stdout  # the table shows it whole


def _poller(pair: Replicas, site: str) -> tuple[PlatformProcess, PlatformProcess]:
    """(the replica holding ``site``'s lease, the other one)."""
    deadline = time.monotonic() + 30
    line = f"polling site {site} "
    while time.monotonic() < deadline:
        holders = [p for p in pair.both if line in p.log_text()]
        if len(holders) == 1:
            other = pair.b if holders[0] is pair.a else pair.a
            return holders[0], other
        assert len(holders) < 2, "both replicas poll the same site"
        time.sleep(0.5)
    raise AssertionError(f"no replica polls site {site}")


def test_when_the_poller_dies_the_other_replica_polls_within_seconds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, make_project: Callable[..., Path]
) -> None:
    with two_replicas(tmp_path, "takeover") as pair:
        holder, survivor = _poller(pair, "local")
        os.killpg(holder.process.pid, signal.SIGKILL)
        killed = time.monotonic()
        deadline = killed + 15
        while "polling site local " not in survivor.log_text():
            assert time.monotonic() < deadline, survivor.log_text()[-3000:]
            time.sleep(0.2)
        took_over = time.monotonic() - killed
        user = survivor.new_user("survivor", os_account=True)
        monkeypatch.setenv("MANTIK_USERNAME", user[0])
        monkeypatch.setenv("MANTIK_PASSWORD", user[1])
        monkeypatch.setenv("MLFLOW_TRACKING_URI", survivor.url)
        mantik.init_tracking()
        experiment = mlflow.create_experiment("after-takeover")
        project = make_project("echo polled", {"ComputeSite": "local"})
        client = mantik.ComputeBackendClient.from_env()
        submitted = client.submit_run(experiment, {}, project, "backend.json")
        info = client.wait(submitted.run_id, timeout=120, interval=0.5)
        assert (info.run_status, info.exit_code) == ("FINISHED", 0)
        print(f"lease taken over {took_over:.1f} s after the holder was killed")
