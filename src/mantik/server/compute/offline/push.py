"""One sync of one job's snapshot into the central run (see :mod:`.syncer`)."""

from __future__ import annotations

import contextlib
import hashlib
import logging
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mlflow.entities import Metric, Param, RunTag
from mlflow.exceptions import MlflowException

from mantik.server.compute.offline.files import node_path, private_copy, walk_files
from mantik.server.compute.offline.local_store import LocalRun, Snapshot
from mantik.server.compute.offline.marks import SyncState
from mantik.server.compute.offline.model_sync import ModelSync
from mantik.server.compute.offline.ports import CentralRuns
from mantik.server.models import ComputeJob, OfflineRun

log = logging.getLogger("mantik.offline")
BATCH = 1000  # MLflow's limit of metrics per log_batch
_PAIRS_BATCH = 100  # … and of params or tags
SOURCE_RUN_TAG = "mantik.offline.source_run"
SYNCED_UNTIL_TAG = "mantik.sync.synced_until"
_TERMINAL = ("FINISHED", "FAILED", "KILLED")
# The platform's own tags of the job's run, and those the local pre-created run carries.
_KEEP_CENTRAL = ("mlflow.user", "mlflow.runName", "mlflow.parentRunId")
_KEEP_PREFIXES = ("mantik.", "mlflow.source.", "mlflow.project.")
# A file written within this many seconds may still be growing: it waits for the next sync.
_SETTLE_SECONDS = 2.0


class JobSync:
    """One sync of one job's snapshot."""

    def __init__(
        self,
        runs: CentralRuns,
        job: ComputeJob,
        state: SyncState,
        local: Snapshot,
        offline_dir: Path,
        final: bool,
    ) -> None:
        self.runs = runs
        self.client = runs.client
        self.job = job
        self.state = state
        self.local = local
        self.offline_dir = offline_dir
        self.final = final
        self.newest: int | None = None

    def run(self, status: str | None) -> int | None:
        local_runs = [r for r in self.local.runs() if not r.deleted or r.run_id == self.job.run_id]
        root = next((r for r in local_runs if r.run_id == self.job.run_id), None)
        if root is None:  # the job's store was never prepared
            return None
        mapped = self._map_runs(local_runs)
        for run in self.local.runs():  # child runs the job deleted after they were synced
            if run.deleted and run.run_id != self.job.run_id and run.run_id in mapped:
                self._delete_child(mapped[run.run_id].central_run_id)
        linker = ModelSync(self.runs, self.state, self.job.experiment_id, self.offline_dir)
        # Models first: metrics and outputs refer to their central ids.
        models = linker.models(self.local, {r: m.central_run_id for r, m in mapped.items()})
        for run in local_runs:
            row = mapped[run.run_id]
            central = row.central_run_id
            self._params(run.run_id, central)
            self._tags(run.run_id, central, is_root=run is root)
            self._metrics(run.run_id, row, models)
            linker.links(self.local, run.run_id, central, models)
            self._artifacts(run, central)
            if run is not root and not row.ended:
                self._end_child(run, row, status)
        if self.newest is not None:
            when = datetime.fromtimestamp(self.newest / 1000, UTC).isoformat(timespec="seconds")
            self.runs.set_tags(self.job.run_id, {SYNCED_UNTIL_TAG: when})
        return root.end_time if root.status in _TERMINAL else None

    # --- runs ----------------------------------------------------------------------------

    def _map_runs(self, local_runs: list[LocalRun]) -> dict[str, OfflineRun]:
        mapped = self.state.runs()
        if self.job.run_id not in mapped:
            mapped[self.job.run_id] = self.state.add_run(self.job.run_id, self.job.run_id)
        for run in local_runs:  # in start order: parents before their children
            if run.run_id not in mapped:
                central = self._find_child(run.run_id) or self._create_child(run, mapped)
                mapped[run.run_id] = self.state.add_run(run.run_id, central)
        return mapped

    def _find_child(self, local_id: str) -> str | None:
        found = self.client.search_runs(
            [self.job.experiment_id],
            filter_string=f"tags.`{SOURCE_RUN_TAG}` = '{local_id}'",
            max_results=1,
        )
        return str(found[0].info.run_id) if found else None

    def _create_child(self, run: LocalRun, mapped: dict[str, OfflineRun]) -> str:
        tags = self.local.tags(run.run_id)
        parent = mapped.get(tags.get("mlflow.parentRunId", ""))
        # Every run of the job's store belongs under the job's run (as online job tokens allow).
        tags["mlflow.parentRunId"] = parent.central_run_id if parent else self.job.run_id
        tags["mlflow.user"] = self.job.username
        tags[SOURCE_RUN_TAG] = run.run_id
        tags.pop("mlflow.runName", None)
        created = self.client.create_run(
            self.job.experiment_id,
            start_time=run.start_time,
            tags=tags,
            run_name=run.name,
        )
        return str(created.info.run_id)

    def _delete_child(self, central_id: str) -> None:
        if self.client.get_run(central_id).info.lifecycle_stage != "deleted":
            self.client.delete_run(central_id)

    def _end_child(self, run: LocalRun, row: OfflineRun, job_status: str | None) -> None:
        if run.status in _TERMINAL:
            self.client.set_terminated(row.central_run_id, run.status, run.end_time)
        elif self.final:  # the job ended, the child never did
            ended = "KILLED" if job_status in (None, "FINISHED") else job_status
            self.client.set_terminated(row.central_run_id, ended, int(time.time() * 1000))
        else:
            return
        self.state.mark_ended(run.run_id)

    # --- data ----------------------------------------------------------------------------

    def _params(self, local_id: str, central_id: str) -> None:
        local = self.local.params(local_id)
        if not local:
            return
        central = self.client.get_run(central_id).data.params
        new = [Param(k, v) for k, v in local.items() if k not in central]
        for start in range(0, len(new), _PAIRS_BATCH):
            self._log_params(central_id, new[start : start + _PAIRS_BATCH])
        changed = {k: v for k, v in local.items() if k in central and central[k] != v}
        if changed:
            log.warning("run %s: the job changed params %s", central_id, sorted(changed))
            self.runs.set_tags(
                central_id, {f"mantik.sync.changed_param.{k}": v[:5000] for k, v in changed.items()}
            )

    def _log_params(self, central_id: str, params: list[Param]) -> None:
        try:
            self.client.log_batch(central_id, params=params)
        except MlflowException:  # one bad param must not keep the others out
            for param in params:
                try:
                    self.client.log_batch(central_id, params=[param])
                except MlflowException as exc:
                    log.warning("run %s: param %s refused: %s", central_id, param.key, exc)

    def _tags(self, local_id: str, central_id: str, *, is_root: bool) -> None:
        local = self.local.tags(local_id)
        if is_root:
            local = {
                k: v
                for k, v in local.items()
                if k not in _KEEP_CENTRAL and not k.startswith(_KEEP_PREFIXES)
            }
        else:
            local = {k: v for k, v in local.items() if k not in _KEEP_CENTRAL}
        prefix = f"{local_id}/"
        pushed = {  # tag key → its item: the tags this sync put into the central run
            item.fingerprint: key
            for key, item in self.state.items("tag").items()
            if key.startswith(prefix) and item.fingerprint
        }
        if local:
            central = self.client.get_run(central_id).data.tags
            changed = [RunTag(k, v) for k, v in local.items() if central.get(k) != v]
            for start in range(0, len(changed), _PAIRS_BATCH):
                self.client.log_batch(central_id, tags=changed[start : start + _PAIRS_BATCH])
            for key in local.keys() - pushed.keys():
                self.state.put_item("tag", _item_key(local_id, key), fingerprint=key)
        # A tag the job deleted goes centrally too (only tags the sync put there).
        for key in pushed.keys() - local.keys():
            with contextlib.suppress(MlflowException):  # gone already (a crash after it)
                self.client.delete_tag(central_id, key)
            self.state.delete_item("tag", pushed[key])

    def _metrics(self, local_id: str, row: OfflineRun, models: dict[str, str]) -> None:
        pushed_before = high = row.metric_rowid
        while points := self.local.metrics(local_id, high, BATCH):
            metrics = []
            for p in points:
                model = models.get(p.model_id or "")
                dataset = (p.dataset_name, p.dataset_digest) if model else (None, None)
                metrics.append(Metric(p.key, p.value, p.timestamp, p.step, model, *dataset))
            self.client.log_batch(row.central_run_id, metrics=metrics)
            high = points[-1].rowid
            newest = max(p.timestamp for p in points)
            self.state.advance(local_id, high, newest)  # only after the push went through
            self.newest = max(self.newest or 0, newest)
        row.metric_rowid = high
        self._late_links(local_id, row, models, pushed_before)

    def _late_links(
        self, local_id: str, row: OfflineRun, models: dict[str, str], pushed_before: int
    ) -> None:
        """Links to models made after their points went central (the points pushed just now
        carried theirs): the point again, with its model — the server adds only the link."""
        mark = row.link_rowid
        while links := self.local.metric_links(local_id, mark, BATCH):
            late = []
            for link in links:
                point, model = link.point, models.get(link.model_id)
                if point is not None and model and point.rowid <= pushed_before:
                    late.append(
                        Metric(
                            point.key,
                            point.value,
                            point.timestamp,
                            point.step,
                            model,
                            point.dataset_name,
                            point.dataset_digest,
                        )
                    )
            if late:
                self.client.log_batch(row.central_run_id, metrics=late)
            mark = links[-1].rowid
            self.state.advance_links(local_id, mark)
        row.link_rowid = mark

    def _artifacts(self, run: LocalRun, central_id: str) -> None:
        root = node_path(run.artifact_uri, self.offline_dir)
        if root is None or not root.is_dir():
            return
        done = self.state.items("artifact")
        now = time.time()
        repository: Any = None
        with tempfile.TemporaryDirectory(prefix="mantik-artifact-") as scratch:
            for relative, info in walk_files(root):
                key = _item_key(run.run_id, relative)
                fingerprint = f"{info.st_size}:{info.st_mtime_ns}"
                item = done.get(key)
                if item is not None and item.fingerprint == fingerprint:
                    continue
                if not self.final and now - info.st_mtime < _SETTLE_SECONDS:
                    continue  # still being written: next time
                if repository is None:
                    uri = self.client.get_run(central_id).info.artifact_uri
                    repository = self.runs.artifact_repository(uri)
                copy = Path(scratch) / relative
                copied = private_copy(root / relative, copy)
                parent = str(Path(relative).parent)
                repository.log_artifact(str(copy), None if parent == "." else parent)
                copy.unlink()
                if (copied.st_size, copied.st_mtime_ns) == (info.st_size, info.st_mtime_ns):
                    self.state.put_item("artifact", key, fingerprint=fingerprint)


def _item_key(run_id: str, relative: str) -> str:
    key = f"{run_id}/{relative}"
    if len(key) <= 1000:
        return key
    return f"{run_id}/sha256:{hashlib.sha256(relative.encode()).hexdigest()}"
