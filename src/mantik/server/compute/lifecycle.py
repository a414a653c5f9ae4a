"""A run's life after submission: the one place its state changes.

Observations of a job come from the poller (one scheduler query per site and cycle) and
from status requests that carried the user's credentials (sites that answer only with
them); both apply them here. Applying one brings the MLflow run and mantik's job record to
it; at the end it also runs the final offline sync, stores the job's log and ends the job's
token.
"""

from __future__ import annotations

import logging
import tempfile
from datetime import timedelta
from pathlib import Path

from mantik.compute.states import JobState, Observation
from mantik.server.compute.job_folder import LOG
from mantik.server.compute.job_log import LocalFolder, Window
from mantik.server.compute.job_log import read as read_job_log
from mantik.server.compute.jobs import SiteCredentials
from mantik.server.compute.offline.syncer import OfflineSyncer
from mantik.server.compute.runs import RunStore
from mantik.server.db import Database
from mantik.server.identity.service import IdentityService
from mantik.server.models import ComputeJob, utcnow

log = logging.getLogger("mantik.poller")
_TERMINAL_RUN_STATUSES = ("FINISHED", "FAILED", "KILLED")
_FROM_RUN_STATUS = {
    "FINISHED": JobState.COMPLETED,
    "FAILED": JobState.FAILED,
    "KILLED": JobState.CANCELLED,
}
# A job the scheduler no longer lists is only called LOST after this long (the wrapper
# may still be writing its exit code).
_LOST_GRACE = timedelta(seconds=30)


class Lifecycle:
    def __init__(
        self, db: Database, runs: RunStore, identity: IdentityService, offline: OfflineSyncer
    ) -> None:
        self.db = db
        self.runs = runs
        self.identity = identity
        self.offline = offline

    def self_reported(self, job: ComputeJob) -> Observation | None:
        """For sites we cannot ask without the user's credentials: what the job told MLflow."""
        run = self.runs.client.get_run(job.run_id)
        if run.info.status in _FROM_RUN_STATUS:
            code = run.data.tags.get("mantik.exit_code")
            return Observation(
                _FROM_RUN_STATUS[run.info.status],
                "reported by the job",
                int(code) if code and code.lstrip("-").isdigit() else None,
            )
        if job.token_expires_at < utcnow():
            return Observation(JobState.LOST, "the job never reported an end; its token expired")
        if run.info.status == "RUNNING" and job.state == JobState.SUBMITTED:
            return Observation(JobState.RUNNING)
        return None

    def apply(
        self, job: ComputeJob, seen: Observation, credentials: SiteCredentials | None = None
    ) -> None:
        """Bring the run and the job record to ``seen``; ``credentials``: those of the user's
        request that observed it, for the final sync of sites read only with them."""
        if seen.state is JobState.LOST and utcnow() - job.submitted_at < _LOST_GRACE:
            return
        if seen.state.value == job.state and seen.reason == job.reason:
            return
        runs = self.runs
        if seen.state.terminal:
            self._finish(job, seen, credentials)
        elif seen.state is JobState.RUNNING and runs.status(job.run_id) == "SCHEDULED":
            runs.set_status(job.run_id, "RUNNING", terminal=False)
        with self.db.session() as session:
            row = session.get(ComputeJob, job.run_id)
            if row is None:
                return
            row.state = seen.state.value
            row.reason = (seen.reason or "")[:1024] or None
            row.exit_code = seen.exit_code
            row.updated_at = utcnow()
            if seen.state.terminal:
                row.finished_at = utcnow()

    def _finish(
        self, job: ComputeJob, seen: Observation, credentials: SiteCredentials | None
    ) -> None:
        runs = self.runs
        status = seen.state.run_status
        # The wrapper reports success or failure itself; scheduler verdicts (time limit,
        # memory, node failure, cancel) are only known here and override what it said.
        # Offline runs: everything the job logged is in the run before it ends, at the time
        # the job's own run ended.
        end_time = self.offline.finish(job, status, credentials)
        current = runs.status(job.run_id)
        if current != status or current not in _TERMINAL_RUN_STATUSES:
            runs.set_status(job.run_id, status, terminal=True, end_time=end_time)
        tags = {"mantik.job.state": seen.state.value}
        if seen.reason:
            tags["mantik.job.reason"] = seen.reason[:5000]
        if seen.exit_code is not None:
            tags["mantik.exit_code"] = str(seen.exit_code)
        runs.set_tags(job.run_id, tags)
        try:  # also when the wrapper could not upload it; what the log kept, read as the job's
            kept = read_job_log(LocalFolder(Path(job.workdir)), Window())
            if kept.found:
                with tempfile.TemporaryDirectory() as scratch:
                    copy = Path(scratch) / LOG
                    with copy.open("wb") as out:
                        for chunk in kept.chunks:
                            out.write(chunk)
                    runs.log_artifact(job.run_id, copy, "mantik")
        except Exception as exc:  # artifact store trouble must not stop polling
            log.warning("could not store the log of run %s: %s", job.run_id, exc)
        self.identity.end_token(job.token_id, job.token_expires_at.timestamp())
