"""Offline sync of what MLflow 3 keeps beside a run's data: logged models (created, their
artifacts uploaded, finalized), dataset and model inputs, and model outputs.

None of these calls is idempotent on the server (a second ``log_outputs`` is an error, a
second ``create_logged_model`` a second model), so each is recorded as an item after it
succeeded, and looked up centrally before it is made when no record exists (the crash
window between the call and the record).
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Any

from mlflow.entities import (
    Dataset,
    DatasetInput,
    InputTag,
    LoggedModelInput,
    LoggedModelOutput,
    LoggedModelStatus,
)

from mantik.server.compute.offline.files import node_path, private_copy, walk_files
from mantik.server.compute.offline.local_store import LocalModel, Snapshot
from mantik.server.compute.offline.marks import SyncState
from mantik.server.compute.offline.ports import CentralRuns

log = logging.getLogger("mantik.offline")
SOURCE_MODEL_TAG = "mantik.offline.source_model"


class ModelSync:
    def __init__(
        self, runs: CentralRuns, state: SyncState, experiment_id: str, offline_dir: Path
    ) -> None:
        self.runs = runs
        self.client = runs.client
        self.state = state
        self.experiment_id = experiment_id
        self.offline_dir = offline_dir

    # --- logged models -------------------------------------------------------------------

    def models(self, snapshot: Snapshot, run_ids: dict[str, str]) -> dict[str, str]:
        """Bring the local logged models to the central experiment; local → central id."""
        done = self.state.items("model")
        central_ids = {}
        for model in snapshot.models():
            item = done.get(model.model_id)
            if item is not None and item.central_id:
                central = item.central_id
            else:
                central = self._find(model.model_id) or self._create(model, run_ids)
                self.state.put_item("model", model.model_id, central)
            central_ids[model.model_id] = central
            status = LoggedModelStatus.from_int(model.status)
            if LoggedModelStatus.is_finalized(status) and (
                item is None or item.fingerprint != status.value
            ):
                self._finalize(model, central, status)
                self.state.put_item("model", model.model_id, central, status.value)
        return central_ids

    def _find(self, local_id: str) -> str | None:
        found = self.client.search_logged_models(
            experiment_ids=[self.experiment_id],
            filter_string=f"tags.`{SOURCE_MODEL_TAG}` = '{local_id}'",
            max_results=1,
        )
        return str(found[0].model_id) if found else None

    def _create(self, model: LocalModel, run_ids: dict[str, str]) -> str:
        created = self.client.create_logged_model(
            experiment_id=self.experiment_id,
            name=model.name,
            source_run_id=run_ids.get(model.source_run_id or ""),
            tags={**model.tags, SOURCE_MODEL_TAG: model.model_id},
            params=model.params or None,
            model_type=model.model_type,
        )
        return str(created.model_id)

    def _finalize(self, model: LocalModel, central_id: str, status: LoggedModelStatus) -> None:
        central = self.client.get_logged_model(central_id)
        if status is LoggedModelStatus.READY:
            source = node_path(model.artifact_location, self.offline_dir)
            if source is not None and source.is_dir():
                self._upload(source, central.artifact_location)
        changed = {k: v for k, v in model.tags.items() if central.tags.get(k) != v}
        if changed:
            self.client.set_logged_model_tags(central_id, changed)
        if central.status != status:
            self.client.finalize_logged_model(central_id, status)

    def _upload(self, source: Path, artifact_location: str) -> None:
        repository: Any = self.runs.artifact_repository(artifact_location)
        with tempfile.TemporaryDirectory(prefix="mantik-model-") as scratch:
            for relative, _ in walk_files(source):
                copy = Path(scratch) / relative
                private_copy(source / relative, copy)
                parent = str(Path(relative).parent)
                repository.log_artifact(str(copy), None if parent == "." else parent)
                copy.unlink()

    # --- inputs and outputs --------------------------------------------------------------

    def links(
        self, snapshot: Snapshot, local_run: str, central_run: str, models: dict[str, str]
    ) -> None:
        """Datasets and models the run used, models it produced."""
        done = self.state.items("input")
        datasets = [d for d in snapshot.datasets(local_run) if d.input_uuid not in done]
        if datasets:
            self.client.log_inputs(
                central_run,
                datasets=[
                    DatasetInput(
                        Dataset(d.name, d.digest, d.source_type, d.source, d.schema, d.profile),
                        [InputTag(k, v) for k, v in d.tags.items()],
                    )
                    for d in datasets
                ],
            )
            for dataset in datasets:
                self.state.put_item("input", dataset.input_uuid)
        inputs = [i for i in snapshot.model_links(local_run, "input") if i.input_uuid not in done]
        outputs = [o for o in snapshot.model_links(local_run, "output") if o.input_uuid not in done]
        if not inputs and not outputs:
            return
        run = self.client.get_run(central_run)
        have_in = {m.model_id for m in (run.inputs.model_inputs if run.inputs else [])}
        have_out = {m.model_id for m in (run.outputs.model_outputs if run.outputs else [])}
        for link in inputs:
            central = models.get(link.model_id)
            if central is not None and central not in have_in:
                self.client.log_inputs(central_run, models=[LoggedModelInput(central)])
            self.state.put_item("input", link.input_uuid, central)
        for link in outputs:
            central = models.get(link.model_id)
            if central is not None and central not in have_out:  # log_outputs is not idempotent
                self.client.log_outputs(central_run, [LoggedModelOutput(central, link.step)])
            self.state.put_item("input", link.input_uuid, central)
