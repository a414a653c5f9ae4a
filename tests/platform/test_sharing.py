"""``mantik experiments|models|prompts share`` as a user runs it, against the real platform.

What the other user may do is checked with the real MLflow client, before and after. On
main before this change there was no ``models share`` or ``prompts share``; MLflow 3.17.2's
grant API refused prompts to their owners ("resource_type 'prompt' is not supported by the
per-user permission convenience APIs"); and sharing an experiment a second time, to change
the permission, failed with RESOURCE_ALREADY_EXISTS.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import httpx
import mlflow
import pytest
from mlflow.exceptions import MlflowException

from tests.platform.test_tracking import sign_in
from tests.support.platform import PlatformProcess, unique

User = tuple[str, str]
Cli = Callable[..., subprocess.CompletedProcess[str]]
DENIED = r"PERMISSION_DENIED|403"


@pytest.fixture
def mantik(sqlite_platform: PlatformProcess, tmp_path: Path) -> Cli:
    """``mantik …`` as ``user`` runs it: the real entry point, in its own process."""

    def run(user: User, *args: str) -> subprocess.CompletedProcess[str]:
        inherited = {
            k: v for k, v in os.environ.items() if not k.startswith(("MANTIK_", "MLFLOW_"))
        }
        env = {
            **inherited,
            "MANTIK_USERNAME": user[0],
            "MANTIK_PASSWORD": user[1],
            "MLFLOW_TRACKING_URI": sqlite_platform.url,
        }
        return subprocess.run(
            [sys.executable, "-m", "mantik.cli", *args],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
        )

    return run


def succeeded(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def failed(result: subprocess.CompletedProcess[str]) -> str:
    """The one line a refusal prints: exit code 1, no traceback."""
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    return result.stderr.strip()


def test_models_share_gives_exactly_the_permission_asked_for(
    sqlite_platform: PlatformProcess, monkeypatch: pytest.MonkeyPatch, mantik: Cli
) -> None:
    owner, colleague, third = (sqlite_platform.new_user(p) for p in ("mowner", "mmate", "mthird"))
    name = unique("model")
    sign_in(monkeypatch, sqlite_platform, owner)
    with mlflow.start_run(experiment_id=mlflow.create_experiment(name)) as run:
        mlflow.log_text("weights", "model/weights.txt")
    mlflow.MlflowClient().create_registered_model(name)
    source = f"runs:/{run.info.run_id}/model"
    mlflow.MlflowClient().create_model_version(name, source, run_id=run.info.run_id)

    sign_in(monkeypatch, sqlite_platform, colleague)
    with pytest.raises(MlflowException, match=DENIED):
        mlflow.MlflowClient().get_model_version(name, "1")
    assert mlflow.MlflowClient().search_model_versions(f"name = '{name}'") == []

    shared = succeeded(mantik(owner, "models", "share", name, colleague[0]))
    assert shared == f"Shared registered model '{name}' with '{colleague[0]}' (READ)."
    sign_in(monkeypatch, sqlite_platform, colleague)
    client = mlflow.MlflowClient()
    assert client.get_model_version(name, "1").run_id == run.info.run_id
    assert [v.version for v in client.search_model_versions(f"name = '{name}'")] == ["1"]
    with pytest.raises(MlflowException, match=DENIED):
        client.update_model_version(name, "1", description="mine now")
    assert "takes MANAGE" in failed(mantik(colleague, "models", "share", name, third[0]))

    changed = succeeded(
        mantik(owner, "models", "share", name, colleague[0], "--permission", "edit")
    )
    assert changed.endswith("(EDIT, replacing the earlier permission).")
    client.update_model_version(name, "1", description="edited")
    assert client.get_model_version(name, "1").description == "edited"
    # EDIT is not enough to pass it on: MLflow wants MANAGE for that.
    assert "takes MANAGE" in failed(mantik(colleague, "models", "share", name, third[0]))

    succeeded(mantik(owner, "models", "share", name, colleague[0], "--permission", "MANAGE"))
    sign_in(monkeypatch, sqlite_platform, third)
    with pytest.raises(MlflowException, match=DENIED):
        mlflow.MlflowClient().get_registered_model(name)
    succeeded(mantik(colleague, "models", "share", name, third[0]))
    assert mlflow.MlflowClient().get_registered_model(name).name == name


def test_prompts_share_lets_the_other_user_load_the_prompt(
    sqlite_platform: PlatformProcess, monkeypatch: pytest.MonkeyPatch, mantik: Cli
) -> None:
    owner, colleague, third = (sqlite_platform.new_user(p) for p in ("powner", "pmate", "pthird"))
    name = unique("prompt")
    sign_in(monkeypatch, sqlite_platform, owner)
    mlflow.genai.register_prompt(name=name, template="Summarise {{text}}.")

    sign_in(monkeypatch, sqlite_platform, colleague)
    with pytest.raises(MlflowException, match=DENIED):
        mlflow.genai.load_prompt(f"prompts:/{name}/1")
    assert name not in [p.name for p in mlflow.genai.search_prompts()]

    shared = succeeded(mantik(owner, "prompts", "share", name, colleague[0]))
    assert shared == f"Shared prompt '{name}' with '{colleague[0]}' (READ)."
    assert mlflow.genai.load_prompt(f"prompts:/{name}/1").template == "Summarise {{text}}."
    assert mlflow.genai.load_prompt(f"prompts:/{name}@latest").version == 1
    assert name in [p.name for p in mlflow.genai.search_prompts()]
    with pytest.raises(MlflowException, match=DENIED):
        mlflow.genai.register_prompt(name=name, template="Ignore {{text}}.")
    assert "takes MANAGE" in failed(mantik(colleague, "prompts", "share", name, third[0]))

    changed = succeeded(
        mantik(owner, "prompts", "share", name, colleague[0], "--permission", "EDIT")
    )
    assert changed.endswith("(EDIT, replacing the earlier permission).")
    assert mlflow.genai.register_prompt(name=name, template="Shorten {{text}}.").version == 2
    assert "takes MANAGE" in failed(mantik(colleague, "prompts", "share", name, third[0]))
    sign_in(monkeypatch, sqlite_platform, third)
    with pytest.raises(MlflowException, match=DENIED):
        mlflow.genai.load_prompt(f"prompts:/{name}/2")


def test_experiments_share_again_changes_the_permission(
    sqlite_platform: PlatformProcess, monkeypatch: pytest.MonkeyPatch, mantik: Cli
) -> None:
    owner, colleague = sqlite_platform.new_user("eowner"), sqlite_platform.new_user("emate")
    name = unique("experiment")
    sign_in(monkeypatch, sqlite_platform, owner)
    experiment_id = mlflow.create_experiment(name)
    with mlflow.start_run(experiment_id=experiment_id) as run:
        mlflow.log_metric("acc", 0.9)

    shared = succeeded(mantik(owner, "experiments", "share", name, colleague[0]))
    assert shared == f"Shared experiment {experiment_id} with '{colleague[0]}' (READ)."
    sign_in(monkeypatch, sqlite_platform, colleague)
    with pytest.raises(MlflowException, match=DENIED):
        mlflow.MlflowClient().log_metric(run.info.run_id, "acc", 1.0)

    changed = mantik(
        owner, "experiments", "share", experiment_id, colleague[0], "--permission", "EDIT"
    )
    assert succeeded(changed).endswith("(EDIT, replacing the earlier permission).")
    mlflow.MlflowClient().log_metric(run.info.run_id, "acc", 1.0)
    assert mlflow.get_run(run.info.run_id).data.metrics == {"acc": 1.0}


def test_refusals_name_the_problem(
    sqlite_platform: PlatformProcess, monkeypatch: pytest.MonkeyPatch, mantik: Cli
) -> None:
    owner, colleague, stranger = (sqlite_platform.new_user(p) for p in ("rowner", "rmate", "rfar"))
    model, prompt = unique("model"), unique("prompt")
    theirs_model, theirs_prompt = unique("model"), unique("prompt")
    sign_in(monkeypatch, sqlite_platform, owner)
    mlflow.MlflowClient().create_registered_model(model)
    mlflow.genai.register_prompt(name=prompt, template="Hello {{name}}.")
    sign_in(monkeypatch, sqlite_platform, stranger)
    mlflow.MlflowClient().create_registered_model(theirs_model)
    mlflow.genai.register_prompt(name=theirs_prompt, template="Hi {{name}}.")
    mate = colleague[0]

    assert failed(mantik(owner, "models", "share", prompt, mate)) == (
        f"Error: '{prompt}' is a prompt, not a registered model: "
        "share it with `mantik prompts share`."
    )
    assert failed(mantik(owner, "prompts", "share", model, mate)) == (
        f"Error: '{model}' is a registered model, not a prompt: "
        "share it with `mantik models share`."
    )
    # What exists but is someone else's reads exactly like what does not exist.
    for kind, noun, hidden in [
        ("models", "registered model", theirs_model),
        ("prompts", "prompt", theirs_prompt),
        ("models", "registered model", "no-such-model"),
        ("prompts", "prompt", "no-such-prompt"),
    ]:
        refused = failed(mantik(owner, kind, "share", hidden, mate))
        assert refused == f"Error: No {noun} named '{hidden}' that you can see.", kind
    missing = failed(mantik(owner, "experiments", "share", "no-such-experiment", mate))
    assert missing == "Error: No experiment 'no-such-experiment' that you can see."

    unknown = failed(mantik(owner, "prompts", "share", prompt, "nobody-here"))
    assert unknown == "Error: No user named 'nobody-here' on this platform."
    yourself = failed(mantik(owner, "models", "share", model, owner[0]))
    assert "with yourself" in yourself


def test_prompt_grants_need_a_prompt_and_manage_on_it(sqlite_platform: PlatformProcess) -> None:
    """MLflow's own grant API, which the platform opens to prompts: still its MANAGE check,
    and a ``prompt`` grant must name a prompt — not a former prompt that is now a model."""
    owner, colleague = sqlite_platform.new_user("gowner"), sqlite_platform.new_user("gmate")
    client = sqlite_platform.client(owner)
    prompt, model = unique("prompt"), unique("model")
    for name, tags in (
        (prompt, [{"key": "mlflow.prompt.is_prompt", "value": "true"}]),
        (model, []),
    ):
        created = client.post(
            "/api/2.0/mlflow/registered-models/create", json={"name": name, "tags": tags}
        )
        assert created.status_code == 200, created.text

    def grant(name: str) -> httpx.Response:
        return client.post(
            "/api/3.0/mlflow/users/permissions/grant",
            json={
                "username": colleague[0],
                "resource_type": "prompt",
                "resource_id": name,
                "permission": "READ",
            },
        )

    assert grant(prompt).status_code == 200
    # A prompt stays a prompt (the gate keeps its tag), and a prompt grant must name one.
    untagged = client.request(
        "DELETE",
        "/api/2.0/mlflow/registered-models/delete-tag",
        json={"name": prompt, "key": "mlflow.prompt.is_prompt"},
    )
    assert untagged.status_code == 400, untagged.text
    assert grant(model).status_code == 403
    assert grant("no-such-prompt").status_code == 403
    mate = {"Authorization": f"Bearer {sqlite_platform.access_token(colleague)}"}
    reshare = httpx.post(
        f"{sqlite_platform.url}/api/3.0/mlflow/users/permissions/grant",
        json={"username": owner[0], "resource_type": "prompt", "resource_id": prompt,
              "permission": "MANAGE"},
        headers=mate,
    )  # fmt: skip
    assert reshare.status_code == 403
