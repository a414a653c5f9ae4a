"""The real MLflow client against the real platform, on SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import httpx
import mlflow
import pytest
from mlflow.exceptions import MlflowException

import mantik
from tests.support.platform import PlatformProcess


def sign_in(
    monkeypatch: pytest.MonkeyPatch, platform: PlatformProcess, user: tuple[str, str]
) -> None:
    monkeypatch.setenv("MANTIK_USERNAME", user[0])
    monkeypatch.setenv("MANTIK_PASSWORD", user[1])
    monkeypatch.setenv("MLFLOW_TRACKING_URI", platform.url + "/")
    mantik.init_tracking()


def test_params_metrics_artifacts_round_trip(
    platform: PlatformProcess, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    sign_in(monkeypatch, platform, platform.new_user())
    mlflow.set_experiment("round-trip")
    artifact = tmp_path / "weights.bin"
    artifact.write_bytes(bytes(range(256)) * 4096)
    with mlflow.start_run() as run:
        mlflow.log_param("alpha", "0.5")
        for step in range(5):
            mlflow.log_metric("loss", 1.0 / (step + 1), step=step)
        mlflow.log_artifact(str(artifact), artifact_path="model")

    stored = mlflow.get_run(run.info.run_id)
    assert stored.data.params == {"alpha": "0.5"}
    history = mlflow.MlflowClient().get_metric_history(run.info.run_id, "loss")
    assert [m.step for m in history] == [0, 1, 2, 3, 4]
    assert history[-1].value == pytest.approx(0.2)
    downloaded = mlflow.artifacts.download_artifacts(
        run_id=run.info.run_id, artifact_path="model/weights.bin", dst_path=str(tmp_path / "dl")
    )
    assert Path(downloaded).read_bytes() == artifact.read_bytes()


def test_sklearn_autolog_logs_model_and_metrics(
    platform: PlatformProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sklearn.datasets import load_diabetes
    from sklearn.linear_model import Ridge

    sign_in(monkeypatch, platform, platform.new_user())
    mlflow.set_experiment("autolog")
    mlflow.sklearn.autolog(log_models=True, silent=True)
    try:
        x, y = load_diabetes(return_X_y=True)
        with mlflow.start_run() as run:
            Ridge(alpha=0.3).fit(x, y)
    finally:
        mlflow.sklearn.autolog(disable=True)
    data = mlflow.get_run(run.info.run_id).data
    assert data.params["alpha"] == "0.3"
    assert "training_r2_score" in data.metrics
    models = mlflow.search_logged_models(experiment_ids=[run.info.experiment_id])
    assert len(models) == 1
    model = mlflow.sklearn.load_model(f"models:/{models.iloc[0]['model_id']}")
    assert model.predict(x[:2]).shape == (2,)


def test_other_user_cannot_read_or_write_experiment(
    platform: PlatformProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    owner, intruder = platform.new_user("owner"), platform.new_user("intruder")
    sign_in(monkeypatch, platform, owner)
    experiment_id = mlflow.create_experiment("private")
    with mlflow.start_run(experiment_id=experiment_id) as run:
        mlflow.log_metric("secret", 42)

    sign_in(monkeypatch, platform, intruder)
    token = {"Authorization": f"Bearer {mlflow_token()}"}
    read = httpx.get(
        f"{platform.url}/api/2.0/mlflow/experiments/get",
        params={"experiment_id": experiment_id},
        headers=token,
    )
    assert read.status_code == 403
    run_read = httpx.get(
        f"{platform.url}/api/2.0/mlflow/runs/get", params={"run_id": run.info.run_id}, headers=token
    )
    assert run_read.status_code == 403
    write = httpx.post(
        f"{platform.url}/api/2.0/mlflow/runs/create",
        json={"experiment_id": experiment_id},
        headers=token,
    )
    assert write.status_code == 403
    log = httpx.post(
        f"{platform.url}/api/2.0/mlflow/runs/log-metric",
        json={"run_id": run.info.run_id, "key": "x", "value": 1, "timestamp": 0},
        headers=token,
    )
    assert log.status_code == 403
    artifacts = httpx.get(
        f"{platform.url}/api/2.0/mlflow-artifacts/artifacts",
        params={"path": f"{experiment_id}/{run.info.run_id}/artifacts"},
        headers=token,
    )
    assert artifacts.status_code == 403
    assert "private" not in [e.name for e in mlflow.search_experiments()]
    with pytest.raises(MlflowException):
        mlflow.get_run(run.info.run_id)


def test_shared_experiment_is_readable_but_not_writable_with_read(
    platform: PlatformProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mantik.client._sharing import share_experiment

    owner, colleague = platform.new_user("owner"), platform.new_user("colleague")
    sign_in(monkeypatch, platform, owner)
    experiment_id = mlflow.create_experiment("shared")
    with mlflow.start_run(experiment_id=experiment_id) as run:
        mlflow.log_metric("acc", 0.9)
    assert share_experiment("shared", colleague[0], "READ") == experiment_id

    sign_in(monkeypatch, platform, colleague)
    assert mlflow.get_run(run.info.run_id).data.metrics == {"acc": 0.9}
    with pytest.raises(MlflowException, match=r"PERMISSION_DENIED|403"):
        mlflow.MlflowClient().log_metric(run.info.run_id, "acc", 1.0)


def test_mlflow_user_management_is_refused(platform: PlatformProcess) -> None:
    response = httpx.post(
        f"{platform.url}/api/2.0/mlflow/users/create",
        json={"username": "sneaky", "password": "Sneaky-pass1"},
    )
    assert response.status_code == 403
    assert "mantik admin users" in response.json()["message"]


def mlflow_token() -> str:
    import os

    return os.environ["MLFLOW_TRACKING_TOKEN"]


def test_log_batch_cannot_write_to_another_users_model(
    platform: PlatformProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The batch check that mantik speeds up still refuses foreign logged models."""
    owner, intruder = platform.new_user("modelowner"), platform.new_user("batcher")
    sign_in(monkeypatch, platform, owner)
    experiment = mlflow.create_experiment("owner-models")
    model = mlflow.MlflowClient().create_logged_model(experiment_id=experiment)

    sign_in(monkeypatch, platform, intruder)
    mine = mlflow.create_experiment("batcher-exp")
    with mlflow.start_run(experiment_id=mine) as run:
        pass
    token = {"Authorization": f"Bearer {mlflow_token()}"}
    for key in ("model_id", "modelId"):
        metric = {"key": "x", "value": 1, "timestamp": 0, "step": 0, key: model.model_id}
        response = httpx.post(
            f"{platform.url}/api/2.0/mlflow/runs/log-batch",
            json={"run_id": run.info.run_id, "metrics": [metric]},
            headers=token,
        )
        assert response.status_code == 403, key
    allowed = httpx.post(
        f"{platform.url}/api/2.0/mlflow/runs/log-batch",
        json={"run_id": run.info.run_id, "metrics": [{"key": "x", "value": 1, "timestamp": 0}]},
        headers=token,
    )
    assert allowed.status_code == 200
