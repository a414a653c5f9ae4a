"""Requests shaped so that MLflow 3.17.2's check and its handler read different things.

Each attack here succeeded against main before the gate judged what the handler reads:
a job token read other runs and logged models, a text/plain DELETE removed a model of
another user, `*` became a wildcard grant, and `//` routed around our refusals.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import mlflow
import pytest

from tests.support.platform import PlatformProcess

API = "/api/2.0/mlflow"


@pytest.fixture
def two_users(sqlite_platform: PlatformProcess) -> Iterator[dict[str, object]]:
    """Alice owns experiment A with a run and a logged model; Bob the same in B."""
    made: dict[str, object] = {}
    for name in ("alice", "bob"):
        user = sqlite_platform.new_user(name)
        token = sqlite_platform.access_token(user)
        client = httpx.Client(
            base_url=sqlite_platform.url, headers={"Authorization": f"Bearer {token}"}
        )
        exp = client.post(f"{API}/experiments/create", json={"name": f"{user[0]}-work"})
        experiment_id = exp.json()["experiment_id"]
        run = client.post(f"{API}/runs/create", json={"experiment_id": experiment_id})
        run_id = run.json()["run"]["info"]["run_id"]
        client.post(
            f"{API}/runs/log-metric",
            json={"run_id": run_id, "key": "secret", "value": 42, "timestamp": 0},
        )
        model = client.post(
            f"{API}/logged-models", json={"experiment_id": experiment_id, "name": "m"}
        )
        made[name] = {
            "user": user,
            "client": client,
            "experiment_id": experiment_id,
            "run_id": run_id,
            "model_id": model.json()["model"]["info"]["model_id"],
        }
    yield made
    for entry in made.values():
        entry["client"].close()  # type: ignore[index,union-attr]


def job_client(platform: PlatformProcess, owner: dict[str, object]) -> httpx.Client:
    """A job token as the platform issues it for the owner's run."""
    from mantik.server.platform import build

    tokens = build(platform.settings()).tokens
    token, _ = tokens.issue(
        owner["user"][0],  # type: ignore[index]
        "job",
        600,
        run_id=str(owner["run_id"]),
        experiment_id=str(owner["experiment_id"]),
    )
    return httpx.Client(base_url=platform.url, headers={"Authorization": f"Bearer {token}"})


def test_job_token_cannot_read_beyond_its_run(
    sqlite_platform: PlatformProcess, two_users: dict[str, dict[str, object]]
) -> None:
    alice, bob = two_users["alice"], two_users["bob"]
    own, other = alice["run_id"], bob["run_id"]
    # Alice shares her experiment's neighbour? No: the victim is another run of Alice's
    # user (a job token must not reach beyond its run even within its user's rights).
    victim = alice["client"].post(  # type: ignore[union-attr]
        f"{API}/runs/create", json={"experiment_id": alice["experiment_id"]}
    )
    sibling = victim.json()["run"]["info"]["run_id"]
    with job_client(sqlite_platform, alice) as job:
        assert job.get(f"{API}/runs/get", params={"run_id": own}).status_code == 200
        for target in (sibling, other):
            for endpoint in ("runs/get", "artifacts/list"):
                response = job.request(
                    "GET",
                    f"{API}/{endpoint}",
                    params={"run_id": target},
                    content=json.dumps({"run_id": own}),
                    headers={"Content-Type": "application/json"},
                )
                assert response.status_code == 403, (endpoint, response.text)
            history = job.request(
                "GET",
                f"{API}/metrics/get-history",
                params={"run_id": target, "metric_key": "secret"},
                content=json.dumps({"run_id": own}),
                headers={"Content-Type": "application/json"},
            )
            assert history.status_code == 403
            bulk = job.get(
                f"{API}/metrics/get-history-bulk-interval",
                params=[("run_ids", target), ("run_id", own), ("metric_key", "secret")],
            )
            assert bulk.status_code == 403
        exp = job.request(
            "GET",
            f"{API}/experiments/get",
            params={"experiment_id": bob["experiment_id"]},
            content=json.dumps({"experiment_id": alice["experiment_id"]}),
            headers={"Content-Type": "application/json"},
        )
        assert exp.status_code == 403
        search = job.post(
            f"{API}/runs/search",
            params={"experiment_ids": alice["experiment_id"]},
            json={"experiment_ids": [bob["experiment_id"]]},
        )
        assert search.status_code == 403
        own_search = job.post(
            f"{API}/runs/search", json={"experiment_ids": [alice["experiment_id"]]}
        )
        assert own_search.status_code == 200


def test_job_token_reaches_logged_models_of_its_experiment_only(
    sqlite_platform: PlatformProcess, two_users: dict[str, dict[str, object]]
) -> None:
    alice, bob = two_users["alice"], two_users["bob"]
    foreign = bob["model_id"]
    with job_client(sqlite_platform, alice) as job:
        assert job.get(f"{API}/logged-models/{alice['model_id']}").status_code == 200
        assert job.post(f"{API}/logged-models/search", json={}).status_code == 403
        assert job.get(f"{API}/logged-models/{foreign}").status_code == 403
        tags = job.patch(
            f"{API}/logged-models/{foreign}/tags", json={"tags": [{"key": "x", "value": "y"}]}
        )
        assert tags.status_code == 403
        assert job.delete(f"{API}/logged-models/{foreign}").status_code == 403
    still = bob["client"].get(f"{API}/logged-models/{foreign}")  # type: ignore[union-attr]
    assert still.status_code == 200
    assert still.json()["model"]["info"].get("tags") is None


def test_text_plain_delete_cannot_name_another_users_model(
    sqlite_platform: PlatformProcess, two_users: dict[str, dict[str, object]]
) -> None:
    alice, bob = two_users["alice"], two_users["bob"]
    alice_client: httpx.Client = alice["client"]  # type: ignore[assignment]
    bob_client: httpx.Client = bob["client"]  # type: ignore[assignment]
    victim = f"victim-{bob['user'][0]}"  # type: ignore[index]
    mine = f"mine-{alice['user'][0]}"  # type: ignore[index]
    assert bob_client.post(f"{API}/registered-models/create", json={"name": victim}).is_success
    assert alice_client.post(f"{API}/registered-models/create", json={"name": mine}).is_success
    response = alice_client.request(
        "DELETE",
        f"{API}/registered-models/delete",
        params={"name": mine},
        content=json.dumps({"name": victim}),
        headers={"Content-Type": "text/plain"},
    )
    assert response.status_code == 400
    assert bob_client.get(f"{API}/registered-models/get", params={"name": victim}).is_success
    # The honest shape still works.
    honest = alice_client.request("DELETE", f"{API}/registered-models/delete", json={"name": mine})
    assert honest.status_code == 200


def test_a_model_named_star_is_refused(
    sqlite_platform: PlatformProcess, two_users: dict[str, dict[str, object]]
) -> None:
    client: httpx.Client = two_users["alice"]["client"]  # type: ignore[assignment]
    assert client.post(f"{API}/registered-models/create", json={"name": "*"}).status_code == 400
    name = f"renamed-{two_users['alice']['user'][0]}"  # type: ignore[index]
    assert client.post(f"{API}/registered-models/create", json={"name": name}).is_success
    rename = client.post(f"{API}/registered-models/rename", json={"name": name, "new_name": "*"})
    assert rename.status_code == 400


def test_a_prompt_stays_a_prompt(
    sqlite_platform: PlatformProcess, two_users: dict[str, dict[str, object]]
) -> None:
    """Prompts and models are guarded by different grants, chosen by this tag: an editor
    who flipped it locked out everyone, the owner too."""
    alice, bob = two_users["alice"], two_users["bob"]
    client: httpx.Client = alice["client"]  # type: ignore[assignment]
    owner = alice["user"][0]  # type: ignore[index]
    prompt, model = f"prompt-{owner}", f"model-{owner}"
    tag = {"key": "mlflow.prompt.is_prompt", "value": "true"}
    assert client.post(
        f"{API}/registered-models/create", json={"name": prompt, "tags": [tag]}
    ).is_success
    assert client.post(f"{API}/registered-models/create", json={"name": model}).is_success
    grant = client.post(
        "/api/3.0/mlflow/users/permissions/grant",
        json={
            "username": bob["user"][0],
            "resource_type": "registered_model",  # type: ignore[index]
            "resource_id": model,
            "permission": "EDIT",
        },
    )
    assert grant.status_code == 200, grant.text
    editor: httpx.Client = bob["client"]  # type: ignore[assignment]
    flip = editor.post(f"{API}/registered-models/set-tag", json={"name": model, **tag})
    assert flip.status_code == 400
    unflip = client.request(
        "DELETE", f"{API}/registered-models/delete-tag", json={"name": prompt, "key": tag["key"]}
    )
    assert unflip.status_code == 400
    # Other tags stay the editors' to set, and the owner keeps her model.
    other = editor.post(
        f"{API}/registered-models/set-tag", json={"name": model, "key": "k", "value": "v"}
    )
    assert other.status_code == 200, other.text
    assert client.get(f"{API}/registered-models/get", params={"name": model}).status_code == 200


@pytest.mark.parametrize("segment", ["./", "%2e/", ".//", "../", "%2E%2E/"])
def test_dot_segments_in_artifact_paths_are_refused(
    sqlite_platform: PlatformProcess, two_users: dict[str, dict[str, object]], segment: str
) -> None:
    alice, bob = two_users["alice"], two_users["bob"]
    client: httpx.Client = alice["client"]  # type: ignore[assignment]
    base = f"{sqlite_platform.url}/api/2.0/mlflow-artifacts/artifacts"
    url = f"{base}/{alice['experiment_id']}/{segment}{bob['experiment_id']}/{bob['run_id']}/x"
    response = client.get(httpx.URL(url))
    assert response.status_code in (400, 403, 404), response.text
    listing = client.get(
        f"{API}/artifacts/list", params={"run_id": alice["run_id"], "path": f"{segment}x"}
    )
    assert listing.status_code == 400


def test_double_slashes_do_not_route_around_refusals(sqlite_platform: PlatformProcess) -> None:
    """Even an admin cannot create MLflow-only accounts (they could never sign in)."""
    admin = sqlite_platform.new_user("admin", admin=True)
    headers = {"Authorization": f"Bearer {sqlite_platform.access_token(admin)}"}
    for n, path in enumerate(("//api/2.0/mlflow/users/create", "/api//2.0/mlflow/users/create")):
        response = httpx.post(
            httpx.URL(sqlite_platform.url + path),
            json={"username": f"ghost{n}", "password": "Pw-ghost-1234!"},
            headers=headers,
        )
        assert response.status_code == 403, (path, response.text)
        assert "mantik admin users" in response.json()["message"]


@pytest.mark.parametrize(
    "path",
    [
        "/ajax-api/3.0/jobs/search",
        "/ajax-api/3.0/mlflow/assistant/config",
        "/ajax-api/3.0/mlflow/assistant/providers",
    ],
)
def test_job_execution_and_the_assistant_are_refused(
    sqlite_platform: PlatformProcess, two_users: dict[str, dict[str, object]], path: str
) -> None:
    client: httpx.Client = two_users["alice"]["client"]  # type: ignore[assignment]
    for method in ("GET", "POST", "PUT"):
        assert client.request(method, path, json={}).status_code in (403, 404, 405), method
    assert client.put("/ajax-api/3.0/mlflow/assistant/config", json={}).status_code == 403


def test_only_admins_list_users(
    sqlite_platform: PlatformProcess, two_users: dict[str, dict[str, object]]
) -> None:
    client: httpx.Client = two_users["alice"]["client"]  # type: ignore[assignment]
    assert client.get(f"{API}/users/list").status_code == 403
    admin = sqlite_platform.new_user("admin", admin=True)
    token = sqlite_platform.access_token(admin)
    listed = httpx.get(
        f"{sqlite_platform.url}{API}/users/list", headers={"Authorization": f"Bearer {token}"}
    )
    assert listed.status_code == 200


def test_localhost_origins_get_no_credentialed_cors(sqlite_platform: PlatformProcess) -> None:
    """MLflow answers any http://localhost:* origin with credentials allowed; we do not."""
    evil = "http://localhost:6666"
    preflight = httpx.options(
        f"{sqlite_platform.url}{API}/experiments/search",
        headers={"Origin": evil, "Access-Control-Request-Method": "POST"},
    )
    assert preflight.headers.get("access-control-allow-origin") != evil
    assert preflight.headers.get("access-control-allow-credentials") != "true"
    read = httpx.get(f"{sqlite_platform.url}/version", headers={"Origin": evil})
    assert read.headers.get("access-control-allow-origin") != evil


def test_the_mlflow_client_still_works(
    sqlite_platform: PlatformProcess, monkeypatch: pytest.MonkeyPatch, tmp_path: object
) -> None:
    import mantik

    user = sqlite_platform.new_user("client")
    monkeypatch.setenv("MANTIK_USERNAME", user[0])
    monkeypatch.setenv("MANTIK_PASSWORD", user[1])
    monkeypatch.setenv("MLFLOW_TRACKING_URI", sqlite_platform.url + "/")
    mantik.init_tracking()
    mlflow.set_experiment("shapes")
    with mlflow.start_run() as run:
        mlflow.log_metric("m", 1.0)
        mlflow.log_text("hello", "notes/a.txt")
    assert mlflow.artifacts.load_text(f"runs:/{run.info.run_id}/notes/a.txt") == "hello"
    client = mlflow.MlflowClient()
    client.create_registered_model(f"reg-{user[0]}")
    client.delete_registered_model(f"reg-{user[0]}")
