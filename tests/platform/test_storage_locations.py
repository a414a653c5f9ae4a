"""Where artifacts are stored is the platform's choice, and a model version reads only
what its creator may read.

Before the gate judged these, ``experiments/create`` with ``artifact_location:
file:///any/dir`` made the server write that experiment's uploads into any directory, and a
model version whose ``source`` was a storage URI tied to no run (``s3://<platform
bucket>/<another user's run>``) was accepted: with an S3 artifact store its download read
another user's files with the platform's credentials. The test platform keeps artifacts in
a local folder, so no S3 request can succeed here; the s3:// source is judged all the same.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import mlflow
import pytest

import mantik
from tests.support.platform import PlatformProcess, unique

API = "/api/2.0/mlflow"
SECRET = b"bob's weights"


def own_things(client: httpx.Client, *, secret: bytes | None = None) -> dict[str, str]:
    """An experiment with a run and a logged model; with ``secret``, a file in both."""
    experiment = client.post(f"{API}/experiments/create", json={"name": unique("work")})
    assert experiment.status_code == 200, experiment.text
    experiment_id = experiment.json()["experiment_id"]
    run = client.post(f"{API}/runs/create", json={"experiment_id": experiment_id})
    run_id = run.json()["run"]["info"]["run_id"]
    model = client.post(f"{API}/logged-models", json={"experiment_id": experiment_id})
    model_id = model.json()["model"]["info"]["model_id"]
    if secret is not None:
        for folder in (f"{run_id}/artifacts/model", f"models/{model_id}/artifacts"):
            put = client.put(
                f"/api/2.0/mlflow-artifacts/artifacts/{experiment_id}/{folder}/secret.txt",
                content=secret,
            )
            assert put.status_code == 200, put.text
    return {"experiment_id": experiment_id, "run_id": run_id, "model_id": model_id}


Users = tuple[httpx.Client, httpx.Client, tuple[str, str], str]


@pytest.fixture
def alice_and_bob(sqlite_platform: PlatformProcess) -> Iterator[Users]:
    """Clients of Alice (the attacker) and Bob, Alice's credentials and Bob's name."""
    alice, bob = sqlite_platform.new_user("alice"), sqlite_platform.new_user("bob")
    with (
        sqlite_platform.client(alice) as alice_client,
        sqlite_platform.client(bob) as bob_client,
    ):
        yield alice_client, bob_client, alice, bob[0]


def test_clients_cannot_choose_where_artifacts_are_stored(
    sqlite_platform: PlatformProcess,
    alice_and_bob: Users,
    tmp_path: Path,
) -> None:
    alice, bob, _, _ = alice_and_bob
    anywhere = tmp_path / "anywhere"
    anywhere.mkdir()
    created = alice.post(
        f"{API}/experiments/create",
        json={"name": unique("planted"), "artifact_location": anywhere.as_uri()},
    )
    if created.status_code == 200:  # the attack goes on as far as the server lets it
        run = alice.post(
            f"{API}/runs/create", json={"experiment_id": created.json()["experiment_id"]}
        )
        alice.post(
            "/ajax-api/2.0/mlflow/upload-artifact",
            params={"run_uuid": run.json()["run"]["info"]["run_id"], "path": "planted.txt"},
            content=b"written where the client said",
        )
    assert not list(anywhere.rglob("*")), "the server wrote into a directory the client chose"
    assert created.status_code == 400, created.text
    assert created.json()["error_code"] == "INVALID_PARAMETER_VALUE"
    assert "artifact_location" in created.json()["message"]

    victim = own_things(bob)["experiment_id"]
    for path, body in [
        (f"{API}/experiments/create", {"artifactLocation": anywhere.as_uri()}),
        (f"{API}/experiments/create", {"artifact_location": f"mlflow-artifacts:/{victim}"}),
        (f"{API}/experiments/create", {"artifact_location": "s3://another-bucket/x"}),
        ("/ajax-api/2.0/mlflow/experiments/create", {"artifact_location": anywhere.as_uri()}),
    ]:
        response = alice.post(path, json={"name": unique("planted"), **body})
        assert response.status_code == 400, (body, response.text)
    # Without one, the platform's proxied store is used.
    plain = alice.post(f"{API}/experiments/create", json={"name": unique("plain")})
    assert plain.status_code == 200, plain.text
    got = alice.get(
        f"{API}/experiments/get", params={"experiment_id": plain.json()["experiment_id"]}
    )
    assert got.json()["experiment"]["artifact_location"].startswith("mlflow-artifacts:/")
    # The only other route that takes a storage location (a workspace's) stays closed.
    workspace = alice.post(
        "/api/3.0/mlflow/workspaces",
        json={"name": unique("ws"), "default_artifact_root": anywhere.as_uri()},
    )
    assert workspace.status_code in (403, 404, 501), workspace.text
    assert not list(anywhere.rglob("*"))


def test_a_model_version_reads_only_what_its_creator_may_read(
    sqlite_platform: PlatformProcess,
    alice_and_bob: Users,
) -> None:
    alice, bob, _, _ = alice_and_bob
    mine = own_things(alice)
    other = own_things(bob, secret=SECRET)
    own_exp, own_run, own_model = mine["experiment_id"], mine["run_id"], mine["model_id"]
    exp, run, model = other["experiment_id"], other["run_id"], other["model_id"]
    name = unique("loot")
    assert alice.post(f"{API}/registered-models/create", json={"name": name}).status_code == 200
    store = sqlite_platform.data_dir / "artifacts"
    in_run = f"{exp}/{run}/artifacts/model"
    attacks: dict[str, dict[str, Any]] = {
        "s3 path of bob's run, no run_id": {"source": f"s3://mantik-artifacts/{in_run}"},
        "s3 path, alice's run_id": {"source": f"s3://mantik-artifacts/{in_run}", "run_id": own_run},
        "gs path, alice's model_id": {"source": f"gs://mantik/{in_run}", "model_id": own_model},
        "file in the data dir, alice's run_id": {
            "source": (store / in_run).as_uri(),
            "run_id": own_run,
        },
        "plain path, no run_id": {"source": str(store / in_run)},
        "proxied path, alice's run_id": {
            "source": f"mlflow-artifacts:/{in_run}",
            "run_id": own_run,
        },
        "proxied path, bob's run_id": {"source": f"mlflow-artifacts:/{in_run}", "run_id": run},
        "dot segments out of alice's run": {
            "source": f"mlflow-artifacts:/{own_exp}/{own_run}/artifacts/%2e%2e/%2e%2e/../{in_run}",
            "run_id": own_run,
        },
        "runs: URI of bob's run": {"source": f"runs:/{run}/model", "run_id": run},
        "runs: URI of bob's run, alice's run_id": {
            "source": f"runs:/{run}/model",
            "run_id": own_run,
        },
        "bob's logged model": {"source": f"models:/{model}", "model_id": model},
        "bob's logged model, alice's model_id": {
            "source": f"models:/{model}",
            "model_id": own_model,
        },
        "bob's model folder, alice's model_id": {
            "source": f"mlflow-artifacts:/{exp}/models/{model}/artifacts",
            "model_id": own_model,
        },
        "run_id twice (alias)": {
            "source": f"mlflow-artifacts:/{in_run}",
            "run_id": own_run,
            "runId": run,
        },
    }
    outcome: dict[str, tuple[int, bool]] = {}
    for label, body in attacks.items():
        for prefix in (API, "/ajax-api/2.0/mlflow"):
            created = alice.post(f"{prefix}/model-versions/create", json={"name": name, **body})
            leaked = False
            if created.status_code == 200:
                version = created.json()["model_version"]["version"]
                download = alice.get(
                    "/model-versions/get-artifact",
                    params={"name": name, "version": version, "path": "secret.txt"},
                )
                leaked = download.status_code == 200 and download.content == SECRET
            outcome[f"{label} ({prefix})"] = (created.status_code, leaked)
    accepted = {label: result for label, result in outcome.items() if result[0] == 200}
    assert not accepted, "accepted: " + "; ".join(f"{k} -> {v}" for k, v in accepted.items())
    assert all(status in (400, 403) for status, _ in outcome.values()), outcome
    refused = alice.post(
        f"{API}/model-versions/create",
        json={"name": name, **attacks["s3 path of bob's run, no run_id"]},
    )
    assert "source" in refused.json()["message"]


class Doubler(mlflow.pyfunc.PythonModel):
    def predict(self, context: Any, model_input: list[int], params: Any = None) -> list[int]:
        return [2 * x for x in model_input]


def test_the_mlflow_clients_registrations_keep_working(
    sqlite_platform: PlatformProcess,
    monkeypatch: pytest.MonkeyPatch,
    alice_and_bob: Users,
    tmp_path: Path,
) -> None:
    alice_client, bob, alice, bob_user = alice_and_bob
    monkeypatch.setenv("MANTIK_USERNAME", alice[0])
    monkeypatch.setenv("MANTIK_PASSWORD", alice[1])
    monkeypatch.setenv("MLFLOW_TRACKING_URI", sqlite_platform.url)
    mantik.init_tracking()
    mlflow.set_experiment(unique("models"))
    legacy = tmp_path / "legacy"
    mlflow.pyfunc.save_model(str(legacy), python_model=Doubler(), pip_requirements=[])
    with mlflow.start_run() as run:
        logged = mlflow.pyfunc.log_model(name="model", python_model=Doubler(), pip_requirements=[])
        mlflow.log_artifacts(str(legacy), "legacy")  # a model folder among the run's artifacts
    run_id = run.info.run_id
    name = unique("doubler")
    client = mlflow.MlflowClient()
    versions = [
        mlflow.register_model(f"runs:/{run_id}/model", name),  # sends models:/<model_id>
        mlflow.register_model(logged.model_uri, name),
        mlflow.register_model(f"runs:/{run_id}/legacy", name),  # sends mlflow-artifacts:/…
        client.create_model_version(name, f"runs:/{run_id}/legacy", run_id=run_id),
    ]
    assert [v.source.split(":", 1)[0] for v in versions] == [
        "models",
        "models",
        "mlflow-artifacts",
        "runs",
    ]
    copy = client.copy_model_version(f"models:/{name}/1", unique("doubler-copy"))
    for uri in [f"models:/{name}/{v.version}" for v in versions] + [
        f"models:/{copy.name}/{copy.version}"
    ]:
        assert list(mlflow.pyfunc.load_model(uri).predict([1, 2])) == [2, 4], uri
    # The UI's download route serves a registered version's files.
    served = alice_client.get(
        "/model-versions/get-artifact", params={"name": name, "version": "3", "path": "MLmodel"}
    )
    assert served.status_code == 200 and b"python_function" in served.content
    # Prompts carry a placeholder source.
    prompt = mlflow.genai.register_prompt(name=unique("greeting"), template="Hello {{name}}")
    assert mlflow.genai.load_prompt(prompt.uri).format(name="Bob") == "Hello Bob"

    # Shared for reading, Alice's run is a source for Bob; unshared it is not.
    experiment_id = run.info.experiment_id
    bob_name = unique("bobs")
    assert bob.post(f"{API}/registered-models/create", json={"name": bob_name}).status_code == 200
    body = {"name": bob_name, "source": f"runs:/{run_id}/legacy", "run_id": run_id}
    assert bob.post(f"{API}/model-versions/create", json=body).status_code == 403
    granted = alice_client.post(
        "/api/3.0/mlflow/users/permissions/grant",
        json={
            "username": bob_user,
            "resource_type": "experiment",
            "resource_id": experiment_id,
            "permission": "READ",
        },
    )
    assert granted.status_code == 200, granted.text
    shared = bob.post(f"{API}/model-versions/create", json=body)
    assert shared.status_code == 200, shared.text
