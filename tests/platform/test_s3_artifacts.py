"""Artifacts in a real S3 store (SeaweedFS): the platform started with
``MANTIK_ARTIFACTS_DESTINATION=s3://<bucket>/<prefix>`` and boto3's variables, used through
the MLflow client as a user would, and checked in the bucket itself.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import mlflow
import numpy as np
import pytest
from sklearn.linear_model import LinearRegression

import mantik
from tests.support.platform import PlatformProcess, start_platform, unique
from tests.support.s3 import S3Store

API = "/api/2.0/mlflow"
PROXY = "/api/2.0/mlflow-artifacts"
MiB = 1024 * 1024
SECRET = b"alice's weights"


@pytest.fixture(scope="module")
def s3_platform(
    s3_store: S3Store, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[PlatformProcess]:
    """A platform whose artifacts live in the bucket, under a prefix of its own."""
    env = {**s3_store.env(), "MANTIK_ARTIFACTS_DESTINATION": s3_store.destination(unique("mlflow"))}
    with start_platform(tmp_path_factory.mktemp("platform-s3"), env=env) as platform:
        yield platform


@pytest.fixture
def prefix(s3_platform: PlatformProcess, s3_store: S3Store) -> str:
    """The platform's key prefix in the bucket."""
    destination = s3_platform.env["MANTIK_ARTIFACTS_DESTINATION"]
    return destination.removeprefix(f"s3://{s3_store.bucket}/")


@pytest.fixture
def alice(s3_platform: PlatformProcess, monkeypatch: pytest.MonkeyPatch) -> tuple[str, str]:
    """A user whose MLflow client in this process tracks to the S3 platform."""
    user = s3_platform.new_user("alice")
    monkeypatch.setenv("MANTIK_USERNAME", user[0])
    monkeypatch.setenv("MANTIK_PASSWORD", user[1])
    monkeypatch.setenv("MLFLOW_TRACKING_URI", s3_platform.url)
    mantik.init_tracking()
    mlflow.set_experiment(unique("s3"))
    return user


@pytest.fixture
def bob(s3_platform: PlatformProcess) -> httpx.Client:
    """Another user, who was given nothing."""
    return s3_platform.client(s3_platform.new_user("bob"))


def files_under(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file()] if folder.exists() else []


def run_key(prefix: str, run: Any, path: str) -> str:
    return f"{prefix}/{run.info.experiment_id}/{run.info.run_id}/artifacts/{path}"


def test_artifacts_land_in_the_bucket_and_come_back(
    s3_platform: PlatformProcess,
    prefix: str,
    s3_store: S3Store,
    alice: tuple[str, str],
    tmp_path: Path,
) -> None:
    notes = tmp_path / "hello.txt"
    notes.write_bytes(SECRET)
    with mlflow.start_run() as run:
        mlflow.log_artifact(str(notes), "notes")
        mlflow.log_text("second", "notes/deeper/more.txt")
    key = run_key(prefix, run, "notes/hello.txt")
    assert s3_store.keys(run_key(prefix, run, "")) == [
        run_key(prefix, run, "notes/deeper/more.txt"),
        key,
    ]
    assert s3_store.read(key) == SECRET
    assert run.info.artifact_uri.startswith("mlflow-artifacts:/")  # proxied: clients need no S3
    client = mlflow.MlflowClient()
    assert [f.path for f in client.list_artifacts(run.info.run_id, "notes")] == [
        "notes/deeper",
        "notes/hello.txt",
    ]
    local = client.download_artifacts(run.info.run_id, "notes", str(tmp_path / "back"))
    assert (Path(local) / "hello.txt").read_bytes() == SECRET
    assert (Path(local) / "deeper" / "more.txt").read_text() == "second"
    assert files_under(s3_platform.data_dir / "artifacts") == []


def test_a_logged_model_is_stored_in_s3_and_loads_back(
    prefix: str, s3_store: S3Store, alice: tuple[str, str]
) -> None:
    model = LinearRegression().fit(np.array([[0.0], [1.0], [2.0]]), np.array([1.0, 3.0, 5.0]))
    with mlflow.start_run() as run:
        logged = mlflow.sklearn.log_model(model, name="line", pip_requirements=[])
    where = f"{prefix}/{run.info.experiment_id}/models/{logged.model_id}/artifacts/"
    assert where + "MLmodel" in s3_store.keys(where)
    loaded = mlflow.pyfunc.load_model(logged.model_uri)
    assert np.allclose(loaded.predict(np.array([[10.0]])), [21.0])
    registered = mlflow.register_model(f"runs:/{run.info.run_id}/line", unique("line"))
    again = mlflow.sklearn.load_model(f"models:/{registered.name}/{registered.version}")
    assert np.allclose(again.predict(np.array([[3.0]])), [7.0])


@pytest.fixture
def multipart(monkeypatch: pytest.MonkeyPatch) -> int:
    """MLflow's client uploads files of 5 MiB and more in 5 MiB parts; the chunk size."""
    monkeypatch.setenv("MLFLOW_ENABLE_PROXY_MULTIPART_UPLOAD", "true")
    monkeypatch.setenv("MLFLOW_MULTIPART_UPLOAD_MINIMUM_FILE_SIZE", str(5 * MiB))
    monkeypatch.setenv("MLFLOW_MULTIPART_UPLOAD_CHUNK_SIZE", str(5 * MiB))
    return 5 * MiB


def test_a_large_file_goes_up_in_parts(
    s3_platform: PlatformProcess,
    prefix: str,
    s3_store: S3Store,
    alice: tuple[str, str],
    multipart: int,
    tmp_path: Path,
) -> None:
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(12 * MiB))
    with mlflow.start_run() as run:
        mlflow.log_artifact(str(big), "data")
    key = run_key(prefix, run, "data/big.bin")
    head = s3_store.client().head_object(Bucket=s3_store.bucket, Key=key)
    assert head["ContentLength"] == 12 * MiB
    # An S3 object put together from parts has an ETag "<digest>-<number of parts>".
    assert head["ETag"].strip('"').endswith("-3"), head["ETag"]
    back = mlflow.MlflowClient().download_artifacts(
        run.info.run_id, "data/big.bin", str(tmp_path / "back")
    )
    assert (
        hashlib.sha256(Path(back).read_bytes()).digest()
        == hashlib.sha256(big.read_bytes()).digest()
    )
    assert files_under(s3_platform.data_dir / "artifacts") == []


def grant(
    platform: PlatformProcess,
    owner: tuple[str, str],
    experiment_id: str,
    user: str,
    permission: str,
) -> None:
    response = platform.client(owner).post(
        "/api/3.0/mlflow/users/permissions/grant",
        json={
            "username": user,
            "resource_type": "experiment",
            "resource_id": experiment_id,
            "permission": permission,
        },
    )
    assert response.status_code == 200, response.text


def assert_nothing_reached_the_bucket(s3_store: S3Store, prefix: str, run: Any) -> None:
    """No object of ``run`` and no part-wise upload begun under ``prefix``."""
    assert s3_store.keys(run_key(prefix, run, "")) == []
    uploads = s3_store.client().list_multipart_uploads(Bucket=s3_store.bucket, Prefix=prefix)
    assert uploads.get("Uploads", []) == []


def test_only_editors_of_the_run_may_upload_in_parts(
    s3_platform: PlatformProcess,
    prefix: str,
    s3_store: S3Store,
    alice: tuple[str, str],
    multipart: int,
) -> None:
    with mlflow.start_run() as run:
        pass
    carol = s3_platform.new_user("carol")
    intruder = s3_platform.client(carol)
    folder = f"{run.info.experiment_id}/{run.info.run_id}/artifacts"
    body = {"path": "planted.bin", "num_parts": 1}
    calls = {
        "create": body,
        "complete": {"path": "planted.bin", "upload_id": "x", "parts": []},
        "abort": {"path": "planted.bin", "upload_id": "x"},
    }
    for permission in (None, "READ"):
        if permission:
            grant(s3_platform, alice, run.info.experiment_id, carol[0], permission)
        for step, payload in calls.items():
            for base in (PROXY, "/ajax-api/2.0/mlflow-artifacts"):
                refused = intruder.post(f"{base}/mpu/{step}/{folder}", json=payload)
                assert refused.status_code == 403, (permission, step, base, refused.text)
    assert_nothing_reached_the_bucket(s3_store, prefix, run)

    # An editor of the experiment may (a new user: a grant is not changed by granting again).
    dave = s3_platform.new_user("dave")
    grant(s3_platform, alice, run.info.experiment_id, dave[0], "EDIT")
    editor = s3_platform.client(dave)
    created = editor.post(f"{PROXY}/mpu/create/{folder}", json=body)
    assert created.status_code == 200, created.text
    upload_id = created.json()["upload_id"]
    part = httpx.put(created.json()["credentials"][0]["url"], content=b"shared work")
    assert part.status_code == 200, part.text
    done = editor.post(
        f"{PROXY}/mpu/complete/{folder}",
        json={
            "path": "planted.bin",
            "upload_id": upload_id,
            "parts": [{"part_number": 1, "etag": part.headers["ETag"]}],
        },
    )
    assert done.status_code == 200, done.text
    assert s3_store.read(run_key(prefix, run, "planted.bin")) == b"shared work"


def test_another_user_cannot_read_artifacts_from_s3(
    s3_platform: PlatformProcess,
    prefix: str,
    s3_store: S3Store,
    alice: tuple[str, str],
    bob: httpx.Client,
) -> None:
    with mlflow.start_run() as run:
        mlflow.log_text(SECRET.decode(), "notes/secret.txt")
    assert s3_store.read(run_key(prefix, run, "notes/secret.txt")) == SECRET
    folder = f"{run.info.experiment_id}/{run.info.run_id}/artifacts"
    owner = s3_platform.client(alice)
    attempts = {
        "download": (f"{PROXY}/artifacts/{folder}/notes/secret.txt", {}),
        "download (ajax)": (
            f"/ajax-api/2.0/mlflow-artifacts/artifacts/{folder}/notes/secret.txt",
            {},
        ),
        "list": (f"{PROXY}/artifacts", {"path": f"{folder}/notes"}),
        "presigned URL": (f"{PROXY}/presigned/{folder}/notes/secret.txt", {}),
        "UI download": ("/get-artifact", {"run_id": run.info.run_id, "path": "notes/secret.txt"}),
        "run's artifact list": (
            f"{API}/artifacts/list",
            {"run_id": run.info.run_id, "path": "notes"},
        ),
    }
    for label, (path, params) in attempts.items():
        response = bob.get(path, params=params)
        assert response.status_code == 403, (label, response.status_code, response.text)
        assert SECRET not in response.content, label
    # The owner reads the same routes (the refusals above are about Bob, not the routes).
    for label in ("download", "list", "UI download", "run's artifact list"):
        path, params = attempts[label]
        assert owner.get(path, params=params).status_code == 200, label


def test_a_model_version_cannot_point_into_another_users_run_in_s3(
    s3_platform: PlatformProcess,
    prefix: str,
    s3_store: S3Store,
    alice: tuple[str, str],
    bob: httpx.Client,
) -> None:
    with mlflow.start_run() as run:
        mlflow.log_text(SECRET.decode(), "model/secret.txt")
    victim_run = run.info.run_id
    in_run = f"{run.info.experiment_id}/{victim_run}/artifacts/model"
    assert s3_store.read(f"{prefix}/{in_run}/secret.txt") == SECRET
    experiment = bob.post(f"{API}/experiments/create", json={"name": unique("bobs")})
    own_run = bob.post(
        f"{API}/runs/create", json={"experiment_id": experiment.json()["experiment_id"]}
    ).json()["run"]["info"]["run_id"]
    name = unique("loot")
    assert bob.post(f"{API}/registered-models/create", json={"name": name}).status_code == 200
    s3_source = f"s3://{s3_store.bucket}/{prefix}/{in_run}"
    attacks: dict[str, dict[str, str]] = {
        "s3 path of alice's run": {"source": s3_source},
        "s3 path, bob's run_id": {"source": s3_source, "run_id": own_run},
        "s3 path, alice's run_id": {"source": s3_source, "run_id": victim_run},
        "proxied path, bob's run_id": {"source": f"mlflow-artifacts:/{in_run}", "run_id": own_run},
        "proxied path, alice's run_id": {
            "source": f"mlflow-artifacts:/{in_run}",
            "run_id": victim_run,
        },
        "runs: URI of alice's run": {"source": f"runs:/{victim_run}/model"},
    }
    outcome: dict[str, tuple[int, bool]] = {}
    for label, body in attacks.items():
        created = bob.post(f"{API}/model-versions/create", json={"name": name, **body})
        leaked = False
        if created.status_code == 200:
            download = bob.get(
                "/model-versions/get-artifact",
                params={
                    "name": name,
                    "version": created.json()["model_version"]["version"],
                    "path": "secret.txt",
                },
            )
            leaked = download.status_code == 200 and download.content == SECRET
        outcome[label] = (created.status_code, leaked)
    assert all(status in (400, 403) for status, _ in outcome.values()), outcome

    # The same download works for the run's owner: what stops Bob is the gate, not S3.
    owner = s3_platform.client(alice)
    own_name = unique("mine")
    assert owner.post(f"{API}/registered-models/create", json={"name": own_name}).status_code == 200
    mine = owner.post(
        f"{API}/model-versions/create",
        json={"name": own_name, "source": f"mlflow-artifacts:/{in_run}", "run_id": victim_run},
    )
    assert mine.status_code == 200, mine.text
    served = owner.get(
        "/model-versions/get-artifact",
        params={
            "name": own_name,
            "version": mine.json()["model_version"]["version"],
            "path": "secret.txt",
        },
    )
    assert served.status_code == 200 and served.content == SECRET


def test_a_multipart_path_that_names_no_file_is_refused(
    s3_platform: PlatformProcess,
    prefix: str,
    s3_store: S3Store,
    alice: tuple[str, str],
    multipart: int,
) -> None:
    """MLflow stores a part-wise upload under the last segment of the body's ``path``.
    Before, ``..``, ``.`` or a backslash path were a 500 and ``dir/`` left a stray object
    named like the folder; each is a 400 now, and nothing reaches the bucket."""
    with mlflow.start_run() as run:
        pass
    owner = s3_platform.client(alice)
    folder = f"{run.info.experiment_id}/{run.info.run_id}/artifacts"
    for bad in ("..", ".", "data/..", "dir/", "", "a\\..\\b", "..\\x"):
        for step, extra in (
            ("create", {"num_parts": 1}),
            ("complete", {"upload_id": "x", "parts": []}),
            ("abort", {"upload_id": "x"}),
        ):
            answer = owner.post(f"{PROXY}/mpu/{step}/{folder}", json={"path": bad, **extra})
            assert answer.status_code == 400, (bad, step, answer.text)
            assert answer.json()["error_code"] == "INVALID_PARAMETER_VALUE", answer.text
    # Dot segments anywhere in the URL, before the run's artifacts/ too.
    dotted = f"{run.info.experiment_id}/{run.info.run_id}/%2e%2e/{run.info.run_id}/artifacts"
    answer = owner.post(f"{PROXY}/mpu/create/{dotted}/d", json={"path": "x.bin", "num_parts": 1})
    assert answer.status_code == 400, answer.text
    assert_nothing_reached_the_bucket(s3_store, prefix, run)
    # The client's own local path (what MLflow's client sends) is fine, a Windows one too.
    for local in ("/home/alice/big.bin", "C:\\Users\\alice\\big.bin"):
        fine = owner.post(f"{PROXY}/mpu/create/{folder}", json={"path": local, "num_parts": 1})
        assert fine.status_code == 200, fine.text
        aborted = owner.post(
            f"{PROXY}/mpu/abort/{folder}",
            json={"path": local, "upload_id": fine.json()["upload_id"]},
        )
        assert aborted.status_code == 200, aborted.text
