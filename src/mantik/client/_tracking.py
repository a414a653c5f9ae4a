"""``mantik.init_tracking()``: point MLflow at the platform with a fresh token."""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from mantik import _mlflow_internals as mlflow_internals
from mantik._exceptions import PlatformError
from mantik._naming import default_experiment
from mantik.client import _env, _tokens
from mantik.client._tokens import Tokens

AUTH_PROVIDER_NAME = "mantik"
_CONFLICTING = ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")
_EXPERIMENT_CHOICES = ("MLFLOW_EXPERIMENT_NAME", "MLFLOW_EXPERIMENT_ID", "MLFLOW_RUN_ID")
# Another process of the user may have just created the default experiment: its owner grant
# follows the creation by a moment (MLflow answers 403 until then).
_CONCURRENT_CREATION_WAITS = (0.05, 0.1, 0.2, 0.4, 0.8, 1.6)


def init_tracking() -> Tokens:
    """Sign in to the mantik platform and make MLflow track to it.

    Reads ``MANTIK_USERNAME``, ``MANTIK_PASSWORD`` and ``MLFLOW_TRACKING_URI`` (the platform's
    base URL). A cached token is reused without a network call while it is valid. Inside a
    job submitted through mantik it uses the job's own token (no password needed there)::

        import mantik, mlflow
        mantik.init_tracking()
        mlflow.log_metric("loss", 0.1)
    """
    job_token = os.environ.get("MLFLOW_TRACKING_TOKEN")
    if job_token and os.environ.get("MLFLOW_RUN_ID") and not os.environ.get(_env.USERNAME):
        # Inside a mantik job: the wrapper already holds a token for this run.
        url = _env.platform_url(_env.require(_env.TRACKING_URI)[_env.TRACKING_URI])
        activate(url, job_token)
        return _tokens.Tokens(job_token, datetime.now(UTC) + timedelta(hours=1), None)
    values = _env.require(_env.USERNAME, _env.PASSWORD, _env.TRACKING_URI)
    url = _env.platform_url(values[_env.TRACKING_URI])
    username = values[_env.USERNAME]
    tokens = _tokens.obtain(url, username, values[_env.PASSWORD])
    activate(url, tokens.access_token)
    _choose_personal_default(username)
    return tokens


def _choose_personal_default(username: str) -> None:
    """Experiments are private to their creator, so MLflow's shared "Default" (id 0) is
    nobody's: without a chosen experiment, this process logs to the user's own default.

    Only this process is affected (no environment variable: one would leak into child
    processes such as ``mlflow run --experiment-name``, which refuses two choices).
    """
    import mlflow

    if mlflow_internals.active_experiment_id() is not None or any(
        os.environ.get(name) for name in _EXPERIMENT_CHOICES
    ):
        return
    experiment_id = _personal_default_id(mlflow.MlflowClient(), default_experiment(username))
    mlflow_internals.set_active_experiment_id(experiment_id)


def _personal_default_id(client: Any, name: str) -> str:
    """The id of ``name``, created if missing, also when other processes try at once."""
    from mlflow.exceptions import MlflowException

    for wait in (*_CONCURRENT_CREATION_WAITS, None):
        try:
            experiment = client.get_experiment_by_name(name)
            if experiment is None:
                return str(client.create_experiment(name))
        except MlflowException as exc:
            if exc.error_code not in ("RESOURCE_ALREADY_EXISTS", "PERMISSION_DENIED"):
                raise
            if wait is None:
                if exc.error_code == "RESOURCE_ALREADY_EXISTS":
                    raise
                raise PlatformError(
                    f"The experiment '{name}' exists but you may not use it: another account "
                    "created it before such names were reserved. Ask an administrator to "
                    "rename it; until then choose an experiment with MLFLOW_EXPERIMENT_NAME.",
                    status_code=403,
                ) from exc
            time.sleep(wait)
            continue
        if experiment.lifecycle_stage == "deleted":
            raise PlatformError(
                f"Your default experiment '{name}' (id {experiment.experiment_id}) is deleted. "
                "Restore it (mlflow.MlflowClient().restore_experiment"
                f"('{experiment.experiment_id}'), or in the UI), or choose another experiment: "
                "set MLFLOW_EXPERIMENT_NAME before init_tracking(), or call "
                "mlflow.set_experiment() after it."
            )
        return str(experiment.experiment_id)
    raise AssertionError("unreachable")  # pragma: no cover


def activate(url: str, access_token: str) -> None:
    """Make MLflow (this process and its children) use ``url`` with ``access_token``."""
    os.environ[_env.TRACKING_URI] = url
    os.environ["MLFLOW_TRACKING_TOKEN"] = access_token
    # Our request auth provider renews the token inside runs longer than its lifetime
    # (it leaves a job's token alone: without a password there is nothing to renew it with).
    os.environ["MLFLOW_TRACKING_AUTH"] = AUTH_PROVIDER_NAME
    for name in _CONFLICTING:  # MLflow prefers basic auth over the token when both are set
        os.environ.pop(name, None)

    import mlflow

    mlflow.set_tracking_uri(url)
