"""MLflow project backend ``mantik``: ``mlflow run . --backend mantik --backend-config F``.

Registered under the ``mlflow.project_backend`` entry point group. Credentials are those of
:func:`mantik.init_tracking` (``MANTIK_USERNAME``, ``MANTIK_PASSWORD``, and the platform URL
as MLflow's tracking URI).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from mlflow.exceptions import ExecutionException
from mlflow.projects.backend.abstract_backend import AbstractBackend
from mlflow.projects.submitted_run import SubmittedRun

from mantik._exceptions import MantikError
from mantik.client import _env
from mantik.client._compute import ComputeBackendClient
from mantik.client._tracking import init_tracking
from mantik.compute.config.loading import validate_backend_config
from mantik.compute.config.model import BackendConfig


class MantikSubmittedRun(SubmittedRun):
    """A run on a mantik site; its status is the platform's view of the job."""

    def __init__(self, client: ComputeBackendClient, run_id: str) -> None:
        self._client = client
        self._run_id = run_id

    @property
    def run_id(self) -> str:
        return self._run_id

    def wait(self) -> bool:
        return self._client.wait(self._run_id).run_status == "FINISHED"

    def get_status(self) -> str:
        return self._client.get_status(self._run_id).run_status

    def cancel(self) -> None:
        self._client.cancel(self._run_id)
        self._client.wait(self._run_id, timeout=120)


def _config(backend_config: dict[str, Any] | None) -> BackendConfig:
    keys = set(BackendConfig.model_fields) | {
        field.alias for field in BackendConfig.model_fields.values() if field.alias
    }
    # MLflow adds its own keys (ENV_MANAGER, SYNCHRONOUS, …): keep only ours.
    ours = {k: v for k, v in (backend_config or {}).items() if k in keys}
    return validate_backend_config(ours, source="--backend-config")


class MantikBackend(AbstractBackend):
    def run(
        self,
        project_uri: str,
        entry_point: str,
        params: dict[str, Any],
        version: str | None,
        backend_config: dict[str, Any],
        tracking_uri: str,
        experiment_id: str,
    ) -> MantikSubmittedRun:
        try:
            path = Path(project_uri)
            if not path.is_dir():
                raise MantikError(
                    f"The mantik backend runs local project folders; {project_uri!r} is not one "
                    "(clone a git project first)."
                )
            if tracking_uri.startswith(("http://", "https://")):
                os.environ[_env.TRACKING_URI] = tracking_uri
            init_tracking()  # MLflow itself talks to the platform around this call
            client = ComputeBackendClient.from_env()
            submitted = client.submit_project(  # undeclared params pass on, as in MLflow
                experiment_id,
                params,
                path,
                _config(backend_config),
                entry_point or "main",
                allow_undeclared_params=True,
            )
        except MantikError as exc:
            raise ExecutionException(str(exc)) from exc
        # `mlflow run` returns right after this for plugin backends: say where the run is.
        print(
            f"mantik: submitted run {submitted.run_id} to site {submitted.site!r} (job "
            f"{submitted.job_id}); follow it with `mantik runs logs --follow {submitted.run_id}`",
            file=sys.stderr,
        )
        return MantikSubmittedRun(client, submitted.run_id)


def backend() -> MantikBackend:
    return MantikBackend()


__all__ = ["MantikBackend", "MantikSubmittedRun", "backend"]
