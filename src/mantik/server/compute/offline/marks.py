"""The durable side of offline sync: what reached the central run, in mantik's database.

Every write here happens only after the push it records succeeded, so that a crash or a
restart repeats at most the one push in flight — and that push is idempotent by itself
(metric points are the central table's primary key; artifacts overwrite; models, inputs
and outputs are looked up before they are created).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select

from mantik.server.compute.offline.ports import SessionSource
from mantik.server.models import OfflineItem, OfflineRun, OfflineSync, utcnow


@dataclass(frozen=True)
class SyncStatus:
    """What the compute API shows about a run's tracking."""

    tracking: str  # online | offline
    lag_seconds: float | None  # since the newest synced point; None once all is synced
    synced_at: datetime | None
    error: str | None


class SyncState:
    """The sync records of one submitted run (``run_id``)."""

    def __init__(self, db: SessionSource, run_id: str) -> None:
        self.db = db
        self.run_id = run_id

    def load(self) -> OfflineSync | None:
        with self.db.session() as session:
            return session.get(OfflineSync, self.run_id)

    def record_mode(self, tracking: str) -> OfflineSync:
        with self.db.session() as session:
            row = session.get(OfflineSync, self.run_id)
            if row is None:
                row = OfflineSync(run_id=self.run_id, tracking=tracking)
                session.add(row)
            return row

    def runs(self) -> dict[str, OfflineRun]:
        with self.db.session() as session:
            rows = session.scalars(select(OfflineRun).where(OfflineRun.job_run_id == self.run_id))
            return {row.local_run_id: row for row in rows}

    def add_run(self, local_run_id: str, central_run_id: str) -> OfflineRun:
        row = OfflineRun(
            job_run_id=self.run_id,
            local_run_id=local_run_id,
            central_run_id=central_run_id,
            metric_rowid=0,
            link_rowid=0,
            ended=False,
        )
        with self.db.session() as session:
            session.add(row)
        return row

    def advance(self, local_run_id: str, rowid: int, newest_point_ms: int) -> None:
        """Points of ``local_run_id`` up to ``rowid`` are central (one transaction)."""
        with self.db.session() as session:
            run = session.get(OfflineRun, (self.run_id, local_run_id))
            sync = session.get(OfflineSync, self.run_id)
            if run is None or sync is None:
                raise RuntimeError(f"no sync records for run {self.run_id}")
            run.metric_rowid = rowid
            sync.newest_point_ms = max(sync.newest_point_ms or 0, newest_point_ms)

    def advance_links(self, local_run_id: str, rowid: int) -> None:
        """Model links of ``local_run_id`` up to ``rowid`` are central."""
        with self.db.session() as session:
            run = session.get(OfflineRun, (self.run_id, local_run_id))
            if run is None:
                raise RuntimeError(f"no sync records for run {self.run_id}")
            run.link_rowid = rowid

    def mark_ended(self, local_run_id: str) -> None:
        with self.db.session() as session:
            run = session.get(OfflineRun, (self.run_id, local_run_id))
            if run is not None:
                run.ended = True

    def items(self, kind: str) -> dict[str, OfflineItem]:
        with self.db.session() as session:
            rows = session.scalars(
                select(OfflineItem).where(
                    OfflineItem.job_run_id == self.run_id, OfflineItem.kind == kind
                )
            )
            return {row.local_key: row for row in rows}

    def put_item(
        self, kind: str, key: str, central_id: str | None = None, fingerprint: str | None = None
    ) -> None:
        with self.db.session() as session:
            row = session.get(OfflineItem, (self.run_id, kind, key))
            if row is None:
                row = OfflineItem(job_run_id=self.run_id, kind=kind, local_key=key)
                session.add(row)
            row.central_id = central_id
            row.fingerprint = fingerprint

    def delete_item(self, kind: str, key: str) -> None:
        with self.db.session() as session:
            row = session.get(OfflineItem, (self.run_id, kind, key))
            if row is not None:
                session.delete(row)

    def done(self, snapshot_mtime_ns: int | None, *, final: bool) -> None:
        with self.db.session() as session:
            sync = session.get(OfflineSync, self.run_id)
            if sync is None:
                return
            sync.snapshot_mtime_ns = snapshot_mtime_ns
            sync.synced_at = utcnow()
            sync.error = None
            if final:
                sync.final_at = utcnow()

    def failed(self, message: str) -> None:
        with self.db.session() as session:
            sync = session.get(OfflineSync, self.run_id)
            if sync is not None:
                sync.error = message[:1024]


def statuses(db: SessionSource, run_ids: Iterable[str]) -> dict[str, SyncStatus]:
    wanted = list(run_ids)
    if not wanted:
        return {}
    with db.session() as session:
        rows = session.scalars(select(OfflineSync).where(OfflineSync.run_id.in_(wanted))).all()
    now = utcnow().timestamp()
    result = {}
    for row in rows:
        lag = None
        if row.tracking == "offline" and row.final_at is None:
            newest = row.newest_point_ms / 1000 if row.newest_point_ms else None
            lag = round(max(0.0, now - newest), 1) if newest is not None else None
        result[row.run_id] = SyncStatus(row.tracking, lag, row.synced_at, row.error)
    return result
