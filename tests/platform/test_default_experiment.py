"""The personal default experiment ``<user>-default`` belongs to its user.

Before the gate reserved the name, another user who created ``fay-default`` first either
blocked fay's ``mantik.init_tracking()`` (403 on the lookup) or, by sharing it with fay,
silently collected every run fay logged without choosing an experiment. Two first-time
processes of one user raced: both looked the name up, both created it, one crashed with
RESOURCE_ALREADY_EXISTS.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import mlflow
import pytest

import mantik
from mantik.client import _tokens
from tests.support.platform import PlatformProcess, unique

API = "/api/2.0/mlflow"


def sign_in(
    monkeypatch: pytest.MonkeyPatch, platform: PlatformProcess, user: tuple[str, str]
) -> None:
    monkeypatch.setenv("MANTIK_USERNAME", user[0])
    monkeypatch.setenv("MANTIK_PASSWORD", user[1])
    monkeypatch.setenv("MLFLOW_TRACKING_URI", platform.url)
    mantik.init_tracking()


@pytest.fixture
def fay_and_eve(sqlite_platform: PlatformProcess) -> Iterator[tuple[tuple[str, str], httpx.Client]]:
    """Fay, who has never tracked anything, and a client of Eve, the squatter."""
    fay = sqlite_platform.new_user("fay")
    with sqlite_platform.client(sqlite_platform.new_user("eve")) as eve:
        yield fay, eve


def squat(eve: httpx.Client, victim: str, *, share: bool) -> httpx.Response:
    """What Eve tries: create the victim's default name, and share it with the victim."""
    created = eve.post(f"{API}/experiments/create", json={"name": f"{victim}-default"})
    if created.status_code == 200 and share:
        granted = eve.post(
            "/api/3.0/mlflow/users/permissions/grant",
            json={
                "username": victim,
                "resource_type": "experiment",
                "resource_id": created.json()["experiment_id"],
                "permission": "EDIT",
            },
        )
        assert granted.status_code == 200, granted.text
    return created


def assert_refused(response: httpx.Response, victim: str) -> None:
    assert response.status_code == 403, response.text
    body = response.json()
    assert body["error_code"] == "PERMISSION_DENIED"
    assert f"'{victim}-default'" in body["message"] and "reserved" in body["message"]


def test_a_shared_squat_does_not_collect_the_victims_runs(
    sqlite_platform: PlatformProcess,
    monkeypatch: pytest.MonkeyPatch,
    fay_and_eve: tuple[tuple[str, str], httpx.Client],
) -> None:
    fay, eve = fay_and_eve
    squatted = squat(eve, fay[0], share=True)
    sign_in(monkeypatch, sqlite_platform, fay)
    with mlflow.start_run() as run:
        mlflow.log_metric("secret", 42)
    # Eve sees nothing of it: the run went to an experiment of Fay's own.
    assert eve.get(f"{API}/runs/get", params={"run_id": run.info.run_id}).status_code == 403
    experiment = mlflow.get_experiment(run.info.experiment_id)
    assert experiment.name == f"{fay[0]}-default"
    assert_refused(squatted, fay[0])


def test_a_squat_does_not_block_init_tracking(
    sqlite_platform: PlatformProcess,
    monkeypatch: pytest.MonkeyPatch,
    fay_and_eve: tuple[tuple[str, str], httpx.Client],
) -> None:
    fay, eve = fay_and_eve
    squatted = squat(eve, fay[0], share=False)
    sign_in(monkeypatch, sqlite_platform, fay)
    with mlflow.start_run() as run:
        mlflow.log_metric("loss", 0.5)
    assert mlflow.get_run(run.info.run_id).data.metrics == {"loss": 0.5}
    assert_refused(squatted, fay[0])


def test_the_name_is_reserved_in_every_shape(
    sqlite_platform: PlatformProcess, fay_and_eve: tuple[tuple[str, str], httpx.Client]
) -> None:
    fay, eve = fay_and_eve
    victim = f"{fay[0]}-default"
    notes = unique("eve-notes")
    own = eve.post(f"{API}/experiments/create", json={"name": notes})
    assert own.status_code == 200, own.text
    own_id = own.json()["experiment_id"]
    attempts = [
        eve.post(f"{API}/experiments/create", json={"name": victim}),
        eve.post("/ajax-api/2.0/mlflow/experiments/create", json={"name": victim}),
        eve.post(f"{API}/experiments/create", json={"name": f" {victim} "}),
        eve.post(  # a legacy client's double-encoded body, which MLflow decodes twice
            f"{API}/experiments/create",
            content=json.dumps(json.dumps({"name": victim})),
            headers={"Content-Type": "application/json"},
        ),
        eve.post(f"{API}/experiments/update", json={"experiment_id": own_id, "new_name": victim}),
        eve.post(f"{API}/experiments/update", json={"experiment_id": own_id, "newName": victim}),
        eve.post(
            "/ajax-api/2.0/mlflow/experiments/update",
            json={"experiment_id": own_id, "new_name": victim},
        ),
    ]
    for response in attempts:
        assert_refused(response, fay[0])
    # Nothing of Eve's carries the name; Fay creates it herself, by hand as well.
    assert (
        eve.get(f"{API}/experiments/get", params={"experiment_id": own_id}).json()["experiment"][
            "name"
        ]
        == notes
    )
    with sqlite_platform.client(fay) as client:
        mine = client.post(f"{API}/experiments/create", json={"name": victim})
        assert mine.status_code == 200, mine.text
        renamed = client.post(f"{API}/experiments/create", json={"name": unique("fay-scratch")})
        moved = client.post(
            f"{API}/experiments/update",
            json={
                "experiment_id": renamed.json()["experiment_id"],
                "new_name": unique("fay-other"),
            },
        )
        assert moved.status_code == 200, moved.text
    # Names that only look similar are anyone's.
    for name in (unique("eve-defaults"), unique("default"), f"{unique('x')}-Default"):
        assert eve.post(f"{API}/experiments/create", json={"name": name}).status_code == 200


_RACER = """
import json, os, sys, time
from pathlib import Path
import mantik
from mlflow.tracking import fluent

meeting, me = Path(sys.argv[1]), sys.argv[2]
for n, (username, password) in enumerate(json.loads(os.environ["RACERS"])):
    os.environ["MANTIK_USERNAME"], os.environ["MANTIK_PASSWORD"] = username, password
    fluent._active_experiment_id = None
    (meeting / f"ready-{n}-{me}").touch()
    while not (meeting / f"go-{n}").exists():
        time.sleep(0.001)
    mantik.init_tracking()
    print(fluent._active_experiment_id, flush=True)
"""


def test_first_time_processes_of_one_user_do_not_race(
    sqlite_platform: PlatformProcess, tmp_path: Path
) -> None:
    """Several processes of a new user start at the same instant (a job array, a notebook
    and a script): each lands in the one default experiment, none crashes. Each round is a
    user who has never tracked anything."""
    racers, rounds = 4, 4
    users = [sqlite_platform.new_user("racer") for _ in range(rounds)]
    for username, password in users:
        # A cached token spares the sign-in, so the processes meet at the lookup itself.
        _tokens.obtain(sqlite_platform.url, username, password)
    env = {
        **os.environ,
        "RACERS": json.dumps(users),
        "MLFLOW_TRACKING_URI": sqlite_platform.url,
    }
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", _RACER, str(tmp_path), str(me)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for me in range(racers)
    ]
    deadline = time.monotonic() + 120
    for n in range(rounds):
        ready = [tmp_path / f"ready-{n}-{me}" for me in range(racers)]
        while not all(flag.exists() for flag in ready):
            if time.monotonic() > deadline or any(p.poll() is not None for p in processes):
                break
            time.sleep(0.005)
        (tmp_path / f"go-{n}").touch()
    results = [process.communicate(timeout=120) for process in processes]
    failures = [err for (_, err), p in zip(results, processes, strict=True) if p.returncode]
    assert not failures, failures[0][-2000:]
    chosen = [out.split() for out, _ in results]  # per process: one id per round
    for n, (username, password) in enumerate(users):
        ids = {ids_of_process[n] for ids_of_process in chosen}
        assert len(ids) == 1, (username, ids)
        with sqlite_platform.client((username, password)) as client:
            found = client.get(
                f"{API}/experiments/get-by-name",
                params={"experiment_name": f"{username}-default"},
            )
            assert found.json()["experiment"]["experiment_id"] in ids


def test_a_deleted_default_experiment_is_not_silently_used(
    sqlite_platform: PlatformProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Deleting it was the user's decision: it is neither restored behind their back nor
    chosen (MLflow would refuse every run in it); the error says how to go on."""
    user = sqlite_platform.new_user("tidy")
    sign_in(monkeypatch, sqlite_platform, user)
    with mlflow.start_run() as run:
        pass
    mlflow.delete_experiment(run.info.experiment_id)
    mlflow.tracking.fluent._active_experiment_id = None  # a new process of the same user
    with pytest.raises(mantik.MantikError) as caught:
        mantik.init_tracking()
    message = str(caught.value)
    assert f"'{user[0]}-default'" in message and "deleted" in message
    assert "restore" in message and "set_experiment" in message
    # Restored, it is the default again.
    mlflow.MlflowClient().restore_experiment(run.info.experiment_id)
    mantik.init_tracking()
    with mlflow.start_run() as again:
        pass
    assert again.info.experiment_id == run.info.experiment_id


def test_a_squat_from_before_the_reservation_gets_a_clear_error(
    sqlite_platform: PlatformProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A name taken before the gate reserved it (made here in the store, past the gate) is
    waited for briefly — it could be another process's fresh creation — then named."""
    fay = sqlite_platform.new_user("fay")
    store = mlflow.MlflowClient(tracking_uri=sqlite_platform.settings().resolved_backend_store_uri)
    store.create_experiment(f"{fay[0]}-default")
    with pytest.raises(mantik.PlatformError) as caught:
        sign_in(monkeypatch, sqlite_platform, fay)
    message = str(caught.value)
    assert f"'{fay[0]}-default'" in message and "administrator" in message
    assert "MLFLOW_EXPERIMENT_NAME" in message
