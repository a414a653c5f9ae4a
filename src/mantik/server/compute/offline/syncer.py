"""Offline tracking, platform side: snapshots of a job's local store go into its central run.

The poller calls :meth:`OfflineSyncer.sync_active` once per cycle, the run's lifecycle
:meth:`OfflineSyncer.finish` when a job ended. A sync (one run at a time: an flock) reads the
job's newest snapshot (never the live database) and pushes (:mod:`.push`), with the
server-side MlflowClient, what the central run lacks:

- runs: the job's run is the central run itself; other local runs (children) are created
  in the job's experiment once, found again by a tag after a crash, mapped persistently;
- metrics: by the sqlite rowid high-water mark per local run, ≤1000 points per log_batch,
  with step, timestamp and NaN; the mark is committed after each batch went through;
- params in batches of new keys only (a changed value is reported as a tag, not fatal);
  tags diffed against the central run (a tag the job deleted is deleted there, if the sync
  put it there; a child run the job deleted is deleted too); artifacts by (size, mtime);
- metric-to-model links MLflow makes after the points (``log_model``): by their own mark;
- logged models, inputs and outputs (:mod:`.model_sync`);
- at the end: child runs' status and end time, and the local run's end time for the run.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
from collections.abc import Collection
from contextlib import AbstractContextManager
from datetime import timedelta
from pathlib import Path

from sqlalchemy import select

from mantik.compute.states import JobState
from mantik.server.compute.job_folder import EXIT_CODE, OFFLINE, SNAPSHOT, TRACKING_MODE
from mantik.server.compute.jobs import SiteCredentials, TrackedJob
from mantik.server.compute.offline.files import checked_dir
from mantik.server.compute.offline.local_store import open_snapshot
from mantik.server.compute.offline.marks import SyncState
from mantik.server.compute.offline.ports import CentralRuns, SessionSource, SiteFolders
from mantik.server.compute.offline.push import JobSync
from mantik.server.coordination import FileLocks, Locks
from mantik.server.models import ComputeJob, OfflineSync, utcnow

log = logging.getLogger("mantik.offline")
# A final sync that keeps failing is retried by later cycles for this long.
_RETRY_FINAL = timedelta(days=1)


class OfflineSyncer:
    """Syncs offline jobs; ``scratch``: a private folder for snapshot copies and locks."""

    def __init__(
        self,
        db: SessionSource,
        runs: CentralRuns,
        sites: SiteFolders,
        scratch: Path,
        locks: Locks | None = None,
    ) -> None:
        self.db = db
        # One sync per run at a time, across workers and replicas.
        self.locks = locks or FileLocks(scratch / "locks")
        self.runs = runs
        self.client = runs.client
        self.sites = sites
        self.scratch = scratch

    # --- entry points --------------------------------------------------------------------

    def sync_active(self, sites: Collection[str] | None = None) -> None:
        """One cycle: every running job (on ``sites``), and ended ones whose final sync is
        still due."""
        since = utcnow() - _RETRY_FINAL
        with self.db.session() as session:
            due = set(
                session.scalars(
                    select(OfflineSync.run_id).where(
                        OfflineSync.tracking == "offline", OfflineSync.final_at.is_(None)
                    )
                )
            )
            jobs = [
                job
                for job in session.scalars(select(ComputeJob).where(ComputeJob.job_id.is_not(None)))
                if job.site in self.sites  # a site the admin removed: nothing to read
                and (sites is None or job.site in sites)
                and (
                    not JobState(job.state).terminal
                    or (job.run_id in due and job.updated_at > since)
                )
            ]
        for job in jobs:
            try:
                self.sync(job, final=JobState(job.state).terminal, wait=False)
            except Exception as exc:  # one job's trouble must not stop the others
                log.warning("offline sync of run %s failed: %s", job.run_id, exc)

    def finish(
        self, job: ComputeJob, status: str, credentials: SiteCredentials | None = None
    ) -> int | None:
        """The final sync of an ended job; returns when its run ended (ms), for offline runs."""
        try:
            return self.sync(job, final=True, wait=True, status=status, credentials=credentials)
        except Exception as exc:  # later cycles (or requests with credentials) retry
            log.warning("final offline sync of run %s failed: %s", job.run_id, exc)
            return None

    def sync(
        self,
        job: ComputeJob,
        *,
        final: bool,
        wait: bool,
        status: str | None = None,
        credentials: SiteCredentials | None = None,
    ) -> int | None:
        """Push what the job's newest snapshot holds beyond the marks; ``credentials``: the
        user's, for sites whose job folders the platform reads only with them (UNICORE)."""
        driver = self.sites.driver(job.site)
        if driver.needs_credentials and credentials is None:
            return None
        state = SyncState(self.db, job.run_id)
        with self._lock(job.run_id, wait) as locked:
            if not locked:
                return None
            record = state.load()
            if record is not None and (record.tracking != "offline" or record.final_at):
                return None  # online, or synced completely: nothing to fetch
            tracked = TrackedJob(str(job.job_id), Path(job.workdir))
            mantik_dir = driver.offline_files(tracked, credentials, final=final)
            if mantik_dir is None:  # the platform cannot read this site's job folders
                return None
            record = record or self._record_mode(state, mantik_dir)
            if record is None or record.tracking != "offline":
                return None
            offline_dir = checked_dir(mantik_dir / OFFLINE, mantik_dir.parent)
            snapshot = offline_dir / SNAPSHOT
            if not snapshot.is_file():
                if final:
                    state.done(None, final=True)
                return None
            mtime = snapshot.lstat().st_mtime_ns
            if mtime == record.snapshot_mtime_ns and not final:
                return None
            try:
                with open_snapshot(snapshot, self.scratch / f"{job.run_id}.db") as local:
                    end = JobSync(self.runs, job, state, local, offline_dir, final).run(status)
            except Exception as exc:
                state.failed(f"{type(exc).__name__}: {exc}")
                raise
            state.done(mtime, final=final)
            if final and driver.needs_credentials:  # a copy fetched from the site: done with
                shutil.rmtree(offline_dir, ignore_errors=True)
            if final and end is None:  # killed before it ended its run: when the job ended
                with contextlib.suppress(OSError):
                    end = int((mantik_dir / EXIT_CODE).stat().st_mtime * 1000)
            return end

    def _record_mode(self, state: SyncState, mantik_dir: Path) -> OfflineSync | None:
        try:
            mode = (mantik_dir / TRACKING_MODE).read_text(errors="replace").strip()
        except OSError:
            return None  # not started yet
        if mode not in ("online", "offline"):
            return None
        self.runs.set_tags(state.run_id, {"mantik.tracking": mode})
        return state.record_mode(mode)

    def _lock(self, run_id: str, wait: bool) -> AbstractContextManager[bool]:
        return self.locks.hold(f"sync:{run_id}", wait=wait)
