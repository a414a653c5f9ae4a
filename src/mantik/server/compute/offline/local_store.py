"""Reading a snapshot of a job's local MLflow store with plain SQL (read-only).

The platform never imports the job's MLflow nor opens the live database: it reads a
snapshot that the node published atomically (see ``node/offline_snapshot.py``), copied to a
private file first so that a rename on a shared filesystem cannot pull it away mid-read.
Tables and columns that older MLflow releases lack (logged models, input steps) read as
empty.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from mantik.server.compute.offline.files import private_copy


@dataclass(frozen=True)
class LocalRun:
    run_id: str
    name: str | None
    status: str
    start_time: int | None
    end_time: int | None
    artifact_uri: str
    deleted: bool


@dataclass(frozen=True)
class MetricRow:
    rowid: int
    key: str
    value: float
    timestamp: int
    step: int
    model_id: str | None = None
    dataset_name: str | None = None
    dataset_digest: str | None = None


@dataclass(frozen=True)
class LinkRow:
    """A metric point's link to a logged model; ``point_rowid``: the point's own row."""

    rowid: int
    model_id: str
    point_rowid: int | None
    point: MetricRow | None


@dataclass(frozen=True)
class LocalModel:
    model_id: str
    name: str
    artifact_location: str
    status: int  # LoggedModelStatus as stored: 1 pending, 2 ready, 3 failed
    model_type: str | None
    source_run_id: str | None
    params: dict[str, str]
    tags: dict[str, str]


@dataclass(frozen=True)
class DatasetRow:
    input_uuid: str
    name: str
    digest: str
    source_type: str
    source: str
    schema: str | None
    profile: str | None
    tags: dict[str, str]


@dataclass(frozen=True)
class Link:
    """A run's model input or output: ``input_uuid`` identifies it in the local store."""

    input_uuid: str
    model_id: str
    step: int


class Snapshot:
    def __init__(self, connection: sqlite3.Connection) -> None:
        self.db = connection
        tables = {row[0] for row in self.db.execute("SELECT name FROM sqlite_master")}
        self.has_models = "logged_models" in tables
        self.has_inputs = "inputs" in tables
        self.input_steps = self.has_inputs and "step" in self._columns("inputs")

    def _columns(self, table: str) -> set[str]:
        return {row[1] for row in self.db.execute(f"PRAGMA table_info({table})")}

    def runs(self) -> list[LocalRun]:
        rows = self.db.execute(
            "SELECT run_uuid, name, status, start_time, end_time, artifact_uri, lifecycle_stage "
            "FROM runs ORDER BY start_time, rowid"
        )
        return [LocalRun(r[0], r[1], r[2], r[3], r[4], r[5] or "", r[6] == "deleted") for r in rows]

    def params(self, run_id: str) -> dict[str, str]:
        rows = self.db.execute("SELECT key, value FROM params WHERE run_uuid = ?", (run_id,))
        return {key: value for key, value in rows}

    def tags(self, run_id: str) -> dict[str, str]:
        rows = self.db.execute("SELECT key, value FROM tags WHERE run_uuid = ?", (run_id,))
        return {key: value or "" for key, value in rows}

    def metrics(self, run_id: str, after_rowid: int, limit: int) -> list[MetricRow]:
        """The next ``limit`` points of ``run_id`` after the high-water mark, in rowid order
        (the order they were logged in: the store only ever appends metrics)."""
        rows = self.db.execute(
            "SELECT rowid, key, value, timestamp, step, is_nan FROM metrics "
            "WHERE run_uuid = ? AND rowid > ? ORDER BY rowid LIMIT ?",
            (run_id, after_rowid, limit),
        ).fetchall()
        links = self._model_links(run_id, rows) if self.has_models and rows else {}
        return [
            MetricRow(
                rowid,
                key,
                float("nan") if is_nan else float(value),
                timestamp,
                step,
                *links.get((key, timestamp, step), (None, None, None)),
            )
            for rowid, key, value, timestamp, step, is_nan in rows
        ]

    def _model_links(
        self, run_id: str, rows: list[tuple[int, str, float, int, int, int]]
    ) -> dict[tuple[str, int, int], tuple[str, str | None, str | None]]:
        """Which points of ``rows`` were logged for a model (MLflow 3): one bounded query."""
        stamps = [row[3] for row in rows]
        found = self.db.execute(
            "SELECT metric_name, metric_timestamp_ms, metric_step, model_id, dataset_name, "
            "dataset_digest FROM logged_model_metrics WHERE run_id = ? "
            "AND metric_timestamp_ms BETWEEN ? AND ?",
            (run_id, min(stamps), max(stamps)),
        )
        return {(r[0], r[1], r[2]): (r[3], r[4], r[5]) for r in found}

    def metric_links(self, run_id: str, after_rowid: int, limit: int) -> list[LinkRow]:
        """The next ``limit`` links of points of ``run_id`` to models, in rowid order. MLflow
        also links points long after they were logged (``log_model`` links the run's points
        of its step), so links have their own high-water mark."""
        if not self.has_models:
            return []
        rows = self.db.execute(
            "SELECT l.rowid, l.model_id, l.dataset_name, l.dataset_digest, m.rowid, m.key, "
            "m.value, m.timestamp, m.step, m.is_nan FROM logged_model_metrics l "
            "LEFT JOIN metrics m ON m.run_uuid = l.run_id AND m.key = l.metric_name "
            "AND m.timestamp = l.metric_timestamp_ms AND m.step = l.metric_step "
            "AND m.value = l.metric_value "
            "WHERE l.run_id = ? AND l.rowid > ? ORDER BY l.rowid LIMIT ?",
            (run_id, after_rowid, limit),
        ).fetchall()
        links: dict[int, LinkRow] = {}
        for rowid, model, name, digest, point_rowid, key, value, stamp, step, is_nan in rows:
            if rowid in links:  # the same point logged twice: one is enough
                continue
            point = None
            if point_rowid is not None:
                number = float("nan") if is_nan else float(value)
                point = MetricRow(point_rowid, key, number, stamp, step, model, name, digest)
            links[rowid] = LinkRow(rowid, model, point_rowid, point)
        return list(links.values())

    def models(self) -> list[LocalModel]:
        if not self.has_models:
            return []
        rows = self.db.execute(
            "SELECT model_id, name, artifact_location, status, model_type, source_run_id "
            "FROM logged_models WHERE lifecycle_stage IS NULL OR lifecycle_stage = 'active' "
            "ORDER BY creation_timestamp_ms, rowid"
        ).fetchall()
        return [
            LocalModel(
                model_id,
                name,
                location,
                status,
                model_type,
                source_run_id,
                params=self._pairs(
                    "SELECT param_key, param_value FROM logged_model_params WHERE model_id = ?",
                    model_id,
                ),
                tags=self._pairs(
                    "SELECT tag_key, tag_value FROM logged_model_tags WHERE model_id = ?", model_id
                ),
            )
            for model_id, name, location, status, model_type, source_run_id in rows
        ]

    def _pairs(self, query: str, model_id: str) -> dict[str, str]:
        return {key: value for key, value in self.db.execute(query, (model_id,))}

    def datasets(self, run_id: str) -> list[DatasetRow]:
        if not self.has_inputs:
            return []
        rows = self.db.execute(
            "SELECT i.input_uuid, d.name, d.digest, d.dataset_source_type, d.dataset_source, "
            "d.dataset_schema, d.dataset_profile FROM inputs i JOIN datasets d "
            "ON d.dataset_uuid = i.source_id WHERE i.source_type = 'DATASET' "
            "AND i.destination_type = 'RUN' AND i.destination_id = ? ORDER BY i.rowid",
            (run_id,),
        ).fetchall()
        return [
            DatasetRow(uuid, name, digest, kind, source, schema, profile, self._input_tags(uuid))
            for uuid, name, digest, kind, source, schema, profile in rows
        ]

    def _input_tags(self, input_uuid: str) -> dict[str, str]:
        rows = self.db.execute(
            "SELECT name, value FROM input_tags WHERE input_uuid = ?", (input_uuid,)
        )
        return {name: value for name, value in rows}

    def model_links(self, run_id: str, direction: str) -> list[Link]:
        """``direction``: ``"output"`` (models the run logged) or ``"input"`` (models it used)."""
        if not self.has_inputs or not self.has_models:
            return []
        kind = "OUTPUT" if direction == "output" else "INPUT"
        step = "step" if self.input_steps else "0"  # MLflow < 3 has no steps
        rows = self.db.execute(
            f"SELECT input_uuid, destination_id, {step} FROM inputs WHERE source_type = ? "  # noqa: S608 (a fixed column)
            "AND source_id = ? AND destination_type = ? ORDER BY rowid",
            (f"RUN_{kind}", run_id, f"MODEL_{kind}"),
        )
        return [Link(*row) for row in rows]


@contextmanager
def open_snapshot(snapshot: Path, scratch: Path) -> Iterator[Snapshot]:
    """Copy ``snapshot`` to the private file ``scratch`` and read the copy."""
    private_copy(snapshot, scratch)
    connection = sqlite3.connect(f"file:{scratch}?mode=ro", uri=True)
    try:
        yield Snapshot(connection)
    finally:
        connection.close()
        scratch.unlink(missing_ok=True)
