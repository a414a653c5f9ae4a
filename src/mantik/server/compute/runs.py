"""Server-side access to MLflow runs (direct store access; the caller checked permissions)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from mlflow.entities import Param, RunTag
from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository
from mlflow.tracking import MlflowClient

from mantik.server.settings import ServerSettings

_PROXY_SCHEME = "mlflow-artifacts:/"


class RunStore:
    def __init__(self, settings: ServerSettings) -> None:
        self.settings = settings
        self.client = MlflowClient(tracking_uri=settings.resolved_backend_store_uri)

    def experiment_exists(self, experiment_id: str) -> bool:
        try:
            experiment = self.client.get_experiment(experiment_id)
        except Exception:
            return False
        return experiment.lifecycle_stage == "active"

    def create(
        self,
        experiment_id: str,
        *,
        run_name: str | None,
        tags: dict[str, str],
        params: dict[str, str],
    ) -> Any:
        run = self.client.create_run(experiment_id, run_name=run_name, tags=tags)
        run_id = run.info.run_id
        try:
            self.client.update_run(run_id, status="SCHEDULED")
            if params:
                self.client.log_batch(run_id, params=[Param(k, v) for k, v in params.items()])
        except BaseException:
            self.discard(run_id)  # a run that cannot take its params never runs
            raise
        return run

    def discard(self, run_id: str) -> None:
        """Remove a run whose submission failed: nothing half-created is left behind."""
        store = self.client._tracking_client.store
        if hasattr(store, "_hard_delete_run"):
            store._hard_delete_run(run_id)
        else:  # pragma: no cover - non-SQL stores
            self.client.delete_run(run_id)

    def set_tags(self, run_id: str, tags: dict[str, str]) -> None:
        self.client.log_batch(run_id, tags=[RunTag(k, v) for k, v in tags.items()])

    def status(self, run_id: str) -> str:
        return str(self.client.get_run(run_id).info.status)

    def set_status(
        self, run_id: str, status: str, *, terminal: bool, end_time: int | None = None
    ) -> None:
        """``end_time`` (ms) defaults to now; offline runs end when their job's run ended."""
        if terminal:
            end_time = end_time or int(time.time() * 1000)
            self.client.set_terminated(run_id, status=status, end_time=end_time)
        else:
            self.client.update_run(run_id, status=status)

    def _artifact_root(self, run: Any) -> str:
        return self.artifact_location(run.info.artifact_uri)

    def artifact_location(self, uri: str) -> str:
        """Where the artifacts under ``uri`` (a run's or a logged model's) really are."""
        if uri.startswith(_PROXY_SCHEME):  # served by the platform: resolve to the store
            rest = uri.removeprefix(_PROXY_SCHEME).lstrip("/")
            return f"{self.settings.resolved_artifacts_destination.rstrip('/')}/{rest}"
        return uri

    def log_artifact(self, run_id: str, local_path: Path, artifact_path: str) -> None:
        run = self.client.get_run(run_id)
        repository = get_artifact_repository(self._artifact_root(run))
        repository.log_artifact(str(local_path), artifact_path)  # type: ignore[no-untyped-call]

    def artifact_repository(self, uri: str) -> Any:
        return get_artifact_repository(self.artifact_location(uri))

    @staticmethod
    def proxied_artifact_url(run: Any, tracking_uri: str) -> str | None:
        """The HTTP URL under which the job can PUT artifacts of ``run`` (proxied runs only)."""
        uri: str = run.info.artifact_uri
        if not uri.startswith(_PROXY_SCHEME):
            return None
        rest = uri.removeprefix(_PROXY_SCHEME).lstrip("/")
        return f"{tracking_uri.rstrip('/')}/api/2.0/mlflow-artifacts/artifacts/{rest}"
