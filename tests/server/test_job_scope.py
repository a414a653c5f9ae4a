"""A job token writes only to its own run."""

from __future__ import annotations

import pytest
from werkzeug.datastructures import MultiDict

from mantik.server.identity.tokens import Principal
from mantik.server.tracking.job_scope import allows

JOB = Principal("alice", "job", 2e9, "jti", run_id="r1", experiment_id="7")
API = "/api/2.0/mlflow/"
MODELS = {"m-own": "7", "m-other": "8"}


def judged(
    path: str, args: dict[str, str] | list[tuple[str, str]], body: object, method: str = ""
) -> bool:
    """What the gate decides, with the method a client would use for that shape."""
    query = MultiDict(args)
    method = method or ("GET" if len(query) else "POST")
    return allows(JOB, method, path, query, body, MODELS.get)


@pytest.mark.parametrize(
    ("path", "args", "body"),
    [
        (API + "runs/log-batch", {}, {"run_id": "r1"}),
        (API + "runs/update", {}, {"run_id": "r1", "status": "RUNNING"}),
        (API + "runs/get", {"run_id": "r1"}, {}),
        (API + "runs/outputs", {}, {"run_id": "r1", "models": [{"model_id": "m-1"}]}),
        (API + "metrics/get-history", {"run_uuid": "r1", "metric_key": "x"}, {}),
        (API + "experiments/get", {"experiment_id": "7"}, {}),
        (
            API + "runs/create",
            {},
            {"experiment_id": "7", "tags": [{"key": "mlflow.parentRunId", "value": "r1"}]},
        ),
        (API + "logged-models", {}, {"experiment_id": "7", "source_run_id": "r1"}),
        ("/api/2.0/mlflow-artifacts/artifacts/7/r1/artifacts/model.pkl", {}, {}),
        ("/api/2.0/mlflow-artifacts/artifacts/7/models/m-1/artifacts/MLmodel", {}, {}),
        (API + "logged-models/m-own", {}, {}),
        (API + "logged-models/m-own/params", {}, {"params": [{"key": "a", "value": "1"}]}),
        (API + "logged-models/search", {}, {"experiment_ids": ["7"]}),
        (API + "metrics/get-history-bulk-interval", [("run_ids", "r1"), ("metric_key", "x")], {}),
    ],
)
def test_allowed(path: str, args: dict[str, str], body: dict[str, object]) -> None:
    assert judged(path, args, body)


@pytest.mark.parametrize(
    ("path", "args", "body"),
    [
        (API + "runs/log-batch", {}, {"run_id": "other"}),
        (API + "runs/update", {}, {"run_id": "other", "status": "FINISHED"}),
        (API + "runs/get", {"run_id": "other"}, {}),
        (API + "runs/delete", {}, {"run_id": "r1"}),
        (API + "experiments/get", {"experiment_id": "8"}, {}),
        (API + "experiments/create", {}, {"name": "new"}),
        (API + "experiments/delete", {}, {"experiment_id": "7"}),
        (API + "runs/create", {}, {"experiment_id": "7"}),
        (API + "runs/search", {}, {"experiment_ids": ["7", "8"]}),
        (API + "logged-models", {}, {"experiment_id": "8"}),
        ("/api/2.0/mlflow-artifacts/artifacts/7/other/artifacts/x", {}, {}),
        ("/api/2.0/mlflow-artifacts/artifacts/8/r1/artifacts/x", {}, {}),
        ("/api/3.0/mlflow/users/permissions/grant", {}, {}),
        ("/", {}, {}),
        # MLflow reads the query of a GET: a body naming the job's own run changes nothing.
        (API + "runs/get", {"run_id": "other"}, {"run_id": "r1"}),
        (API + "metrics/get-history", {"run_id": "other"}, {"run_id": "r1"}),
        (API + "artifacts/list", {"run_id": "other"}, {"run_id": "r1"}),
        (API + "experiments/get", {"experiment_id": "8"}, {"experiment_id": "7"}),
        # MLflow uses run_ids here; a run_id beside it is decoration.
        (API + "metrics/get-history-bulk-interval", [("run_ids", "other"), ("run_id", "r1")], {}),
        (API + "metrics/get-history-bulk-interval", [("run_ids", "r1"), ("run_ids", "x")], {}),
        # JSON aliases are ids too.
        (API + "runs/log-batch", {}, {"runId": "other"}),
        (API + "runs/search", {}, {"experimentIds": ["8"]}),
        # Logged models are judged by their experiment, whatever the body says.
        (API + "logged-models/search", {}, {}),
        (API + "logged-models/search", {}, {"experiment_ids": ["8"]}),
        (API + "logged-models/m-other", {}, {}),
        (API + "logged-models/m-other/tags", {}, {"tags": []}),
        (API + "logged-models/unknown", {}, {}),
        (API + "logged-models", {}, {}),
        (API + "logged-models", {}, {"experiment_id": "7", "source_run_id": "other"}),
        # Dot segments in artifact paths.
        ("/api/2.0/mlflow-artifacts/artifacts/7/r1/../../8/x/artifacts/y", {}, {}),
        ("/api/2.0/mlflow-artifacts/artifacts/7/r1//x", {}, {}),
    ],
)
def test_refused(path: str, args: dict[str, str], body: dict[str, object]) -> None:
    assert not judged(path, args, body)


def test_post_reads_the_body_and_refuses_a_query_beside_it() -> None:
    """POST runs/search?experiment_ids=7 with a body naming 8: MLflow reads the body."""
    body = {"experiment_ids": ["8"]}
    assert not judged(API + "runs/search", {"experiment_ids": "7"}, body, method="POST")
    assert not judged(API + "runs/search", {"experiment_ids": "7"}, {}, method="POST")
    assert judged(API + "runs/search", {}, {"experiment_ids": ["7"]}, method="POST")


def test_logged_model_delete_of_another_experiment_is_refused() -> None:
    assert not judged(API + "logged-models/m-other", {}, {}, method="DELETE")
    assert not judged(API + "logged-models/m-other/tags/k", {}, {}, method="DELETE")
    assert judged(API + "logged-models/m-own", {}, {}, method="PATCH")


def test_user_tokens_have_no_run_scope() -> None:
    user = Principal("alice", "access", 2e9, "jti")
    assert not allows(user, "GET", API + "runs/get", MultiDict({"run_id": "r1"}), {}, MODELS.get)


def test_a_symlinked_job_log_exposes_nothing(tmp_path: object) -> None:
    """A job owns its folder: `logs` must not follow a link to a platform file."""
    from pathlib import Path

    from mantik.server.compute.drivers.local.driver import LocalDriver
    from mantik.server.compute.drivers.site_config import SiteConfig
    from mantik.server.compute.jobs import TrackedJob

    root = Path(str(tmp_path))
    secret = root / "jwt-signing-key.pem"
    secret.write_text("PRIVATE KEY")
    workdir = root / "job"
    (workdir / ".mantik").mkdir(parents=True)
    (workdir / ".mantik" / "job.log").symlink_to(secret)
    driver = LocalDriver(SiteConfig(name="local", driver="local"))
    assert driver.read_log(TrackedJob("1", workdir)).text() == ""
    (workdir / ".mantik" / "job.log").unlink()
    (workdir / ".mantik" / "job.log").write_text("training\n")
    assert driver.read_log(TrackedJob("1", workdir)).text() == "training\n"
    # The folder itself swapped for a link is refused too.
    (root / "elsewhere").mkdir()
    (root / "elsewhere" / "job.log").write_text("PRIVATE KEY")
    other = root / "job2"
    other.mkdir()
    (other / ".mantik").symlink_to(root / "elsewhere")
    assert driver.read_log(TrackedJob("2", other)).text() == ""
