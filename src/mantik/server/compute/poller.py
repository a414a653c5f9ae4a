"""Keeps MLflow runs in step with their jobs: one scheduler query per site per cycle.

Exactly one worker polls (an flock on ``data_dir/poller.lock``); if it dies, another takes
over. Job records live in the database, so a restarted platform picks up where it left off.
"""

from __future__ import annotations

import fcntl
import logging
import os
import tempfile
import threading
from collections import defaultdict
from datetime import timedelta
from pathlib import Path

from sqlalchemy import select

from mantik.compute.states import JobState, Observation
from mantik.server.compute.drivers import DriverError, SiteCredentials, TrackedJob
from mantik.server.compute.offline_files import UnsafePath, checked_dir, private_copy
from mantik.server.compute.service import ComputeService
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


class Poller:
    def __init__(self, service: ComputeService) -> None:
        self.service = service
        self.queries = 0  # scheduler queries made, for the benchmark
        self.offline = service.offline

    def poll_once(self) -> None:
        with self.service.db.session() as session:
            active = [
                job
                for job in session.scalars(select(ComputeJob))
                if not JobState(job.state).terminal and job.job_id
            ]
        by_site: dict[str, list[ComputeJob]] = defaultdict(list)
        for job in active:
            by_site[job.site].append(job)
        for site, jobs in by_site.items():
            if site not in self.service.sites:
                continue
            tracked = [TrackedJob(str(j.job_id), Path(j.workdir)) for j in jobs]
            try:
                observed = self.service.driver(site).poll(tracked)
            except DriverError as exc:
                log.warning("polling site %s failed: %s", site, exc)
                continue
            finally:
                self.queries += 1
            for job in jobs:
                seen = observed.get(str(job.job_id)) or self.self_reported(job)
                if seen is not None:
                    self.apply(job, seen)
        self.offline.sync_active()  # snapshots of offline jobs into their runs

    def self_reported(self, job: ComputeJob) -> Observation | None:
        """For sites we cannot ask without the user's credentials: what the job told MLflow."""
        run = self.service.runs.client.get_run(job.run_id)
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
        runs = self.service.runs
        if seen.state.terminal:
            self._finish(job, seen, credentials)
        elif seen.state is JobState.RUNNING and runs.status(job.run_id) == "SCHEDULED":
            runs.set_status(job.run_id, "RUNNING", terminal=False)
        with self.service.db.session() as session:
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
        runs = self.service.runs
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
        log_file = Path(job.workdir) / ".mantik" / "job.log"
        try:  # also when the wrapper could not upload it; a private copy, never a symlink
            with tempfile.TemporaryDirectory() as scratch:
                checked_dir(log_file.parent, Path(job.workdir))
                private_copy(log_file, Path(scratch) / "job.log")
                runs.log_artifact(job.run_id, Path(scratch) / "job.log", "mantik")
        except (FileNotFoundError, UnsafePath):
            pass
        except Exception as exc:  # artifact store trouble must not stop polling
            log.warning("could not store the log of run %s: %s", job.run_id, exc)
        self.service.identity.end_token(job.token_id, job.token_expires_at.timestamp())


def start_background(service: ComputeService, lock_path: Path, interval: float) -> None:
    """Run the poller in a daemon thread of whichever worker holds ``lock_path``."""

    poller = Poller(service)
    service.on_observation = poller.apply  # status requests with credentials, any worker

    def loop() -> None:
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        stop = threading.Event()
        while not stop.is_set():
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                stop.wait(interval * 5)  # another worker polls
                continue
            while not stop.wait(interval):
                try:
                    poller.poll_once()
                except Exception:
                    log.exception("poll cycle failed")

    threading.Thread(target=loop, name="mantik-poller", daemon=True).start()
