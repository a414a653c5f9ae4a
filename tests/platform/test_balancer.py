"""Two replicas on one PostgreSQL behind Debian's HAProxy, as a centre would run them.

Each replica has its own data dir; jobs and artifacts folders are shared, the public URL is
the balancer's. The replicas believe forwarded headers from HAProxy's address (127.0.0.1)
only. Clients connect from other loopback addresses (127.0.0.2, …), so the address the
platform sees tells whether it is the client's own or the balancer's.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import mlflow
import pytest

import mantik
from tests.platform.test_identity import CREATE
from tests.support.balancer import Balancer, haproxy_binary, start_balancer
from tests.support.platform import PlatformProcess, free_port, start_platform
from tests.support.services import postgres_uris, unavailable

FREE = 5  # MANTIK_MAX_FAILED_LOGINS (the default)
SEARCH = "/api/2.0/mlflow/experiments/search"


@dataclass
class Cluster:
    balancer: Balancer
    replicas: list[PlatformProcess]

    @property
    def url(self) -> str:
        return self.balancer.url


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    if haproxy_binary() is None:
        unavailable("HAProxy (scripts/system-deps.sh)")
    shared = tmp_path_factory.mktemp("replicas-shared")
    jobs = shared / "jobs"
    jobs.mkdir()
    jobs.chmod(0o711)
    port = free_port()
    env = {
        **postgres_uris(f"lb_{os.getpid()}"),
        "MANTIK_JOBS_DIR": str(jobs),
        "MANTIK_ARTIFACTS_DESTINATION": str(shared / "artifacts"),
        "MANTIK_PUBLIC_URL": f"http://127.0.0.1:{port}",
        "MANTIK_FORWARDED_ALLOW_IPS": "127.0.0.1",
    }
    # One after the other: the first creates the schemas, the second finds them.
    with (
        start_platform(tmp_path_factory.mktemp("replica-a"), env=env, workers=1) as first,
        start_platform(tmp_path_factory.mktemp("replica-b"), env=env, workers=1) as second,
        start_balancer([first.url, second.url], port) as balancer,
    ):
        yield Cluster(balancer, [first, second])


def _from(address: str, **kwargs: object) -> httpx.Client:
    transport = httpx.HTTPTransport(local_address=address)
    return httpx.Client(transport=transport, timeout=30, **kwargs)  # type: ignore[arg-type]


def _sign_in(client: httpx.Client, url: str, user: str, password: str) -> httpx.Response:
    return client.post(url + CREATE, json={"username": user, "password": password})


def _served_from(replica: PlatformProcess, address: str, path: str, method: str = "GET") -> int:
    """Requests for ``path`` in the replica's access log whose client was ``address``."""
    pattern = re.compile(rf'{re.escape(address)}:\d+ - "{method} {re.escape(path)}[ ?]')
    return len(pattern.findall(replica.log_text()))


def test_requests_reach_both_replicas_with_the_clients_address(cluster: Cluster) -> None:
    user = cluster.replicas[0].new_user()
    with _from("127.0.0.2") as client:
        signed_in = _sign_in(client, cluster.url, *user)
        assert signed_in.status_code == 201, signed_in.text
        headers = {"Authorization": f"Bearer {signed_in.json()['AccessToken']}"}
        # The token minted by one replica is good at the other: keys live in the database.
        answers = [
            client.get(cluster.url + SEARCH, params={"max_results": 5}, headers=headers)
            for _ in range(8)
        ]
    assert [a.status_code for a in answers] == [200] * 8
    served = [_served_from(replica, "127.0.0.2", SEARCH) for replica in cluster.replicas]
    assert served == [4, 4], served  # round robin; HAProxy's own 127.0.0.1 never appears
    stats = cluster.balancer.server_stats()
    assert {s["status"] for s in stats.values()} == {"UP"}


def test_the_throttle_counts_the_client_not_the_balancer(cluster: Cluster) -> None:
    username, password = cluster.replicas[0].new_user()
    with _from("127.0.0.3") as guesser:
        answers = [
            _sign_in(guesser, cluster.url, username, "Wrong-pass1").status_code
            for _ in range(FREE + 2)
        ]
        # Guesses alternate between the replicas; the count is shared in the database.
        assert answers == [401] * (FREE + 1) + [429]
    with _from("127.0.0.4") as owner:
        assert _sign_in(owner, cluster.url, username, password).status_code == 201


def _guesser_cannot_frame(
    platform: PlatformProcess, url: str, guesser_ip: str, framed: str
) -> None:
    """A client at ``guesser_ip`` that claims to be ``framed`` (X-Forwarded-For) and guesses
    passwords locks itself out, not ``framed``."""
    username, password = platform.new_user()
    with _from(guesser_ip, headers={"X-Forwarded-For": framed}) as guesser:
        for _ in range(FREE + 2):
            _sign_in(guesser, url, username, "Wrong-pass1")
        assert _sign_in(guesser, url, username, password).status_code == 429
    with _from(framed) as owner:
        assert _sign_in(owner, url, username, password).status_code == 201


def test_a_clients_forwarded_for_is_replaced_by_the_balancer(cluster: Cluster) -> None:
    _guesser_cannot_frame(cluster.replicas[0], cluster.url, "127.0.0.5", "127.0.0.6")


def test_a_replica_ignores_forwarded_for_from_a_peer_it_does_not_trust(
    cluster: Cluster,
) -> None:
    _guesser_cannot_frame(cluster.replicas[1], cluster.replicas[1].url, "127.0.0.7", "127.0.0.8")


def test_mlflow_tracks_through_the_balancer(
    cluster: Cluster, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    username, password = cluster.replicas[0].new_user()
    monkeypatch.setenv("MANTIK_USERNAME", username)
    monkeypatch.setenv("MANTIK_PASSWORD", password)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", cluster.url)
    mantik.init_tracking()
    mlflow.set_experiment("behind-the-balancer")
    artifact = tmp_path / "weights.bin"
    artifact.write_bytes(os.urandom(256 * 1024))
    with mlflow.start_run() as run:
        mlflow.log_param("alpha", "0.5")
        for step in range(20):
            mlflow.log_metric("loss", 1.0 / (step + 1), step=step)
        mlflow.log_artifact(str(artifact))
    run_id = run.info.run_id

    history = mlflow.MlflowClient().get_metric_history(run_id, "loss")
    assert [m.step for m in history] == list(range(20))
    downloaded = mlflow.artifacts.download_artifacts(
        run_id=run_id, artifact_path="weights.bin", dst_path=str(tmp_path / "dl")
    )
    assert Path(downloaded).read_bytes() == artifact.read_bytes()
    # Each replica on its own tells the same story: one store behind both.
    for replica in cluster.replicas:
        token = replica.access_token((username, password))
        answer = httpx.get(
            replica.url + "/api/2.0/mlflow/metrics/get-history",
            params={"run_id": run_id, "metric_key": "loss"},
            headers={"Authorization": f"Bearer {token}"},
        )
        assert answer.status_code == 200, answer.text
        assert len(answer.json()["metrics"]) == 20
    # The MLflow client connects from 127.0.0.1 (it cannot pick its address): both served it.
    logged = "/api/2.0/mlflow/runs/log-metric"
    served = [_served_from(r, "127.0.0.1", logged, "POST") for r in cluster.replicas]
    assert min(served) > 0 and sum(served) >= 20, served
