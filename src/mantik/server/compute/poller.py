"""Keeps MLflow runs in step with their jobs: one scheduler query per site per cycle, each
observation applied by :mod:`.lifecycle`.

Exactly one worker polls (an flock on ``data_dir/poller.lock``); if it dies, another takes
over. Job records live in the database, so a restarted platform picks up where it left off.
"""

from __future__ import annotations

import fcntl
import logging
import math
import os
import threading
import time
from collections import defaultdict
from pathlib import Path

from sqlalchemy import select

from mantik.compute.states import JobState
from mantik.server.compute.errors import SiteError
from mantik.server.compute.jobs import TrackedJob
from mantik.server.compute.service import ComputeService
from mantik.server.models import ComputeJob

log = logging.getLogger("mantik.poller")


class Poller:
    def __init__(self, service: ComputeService) -> None:
        self.service = service
        self.queries = 0  # scheduler queries made, for the benchmark
        self.lifecycle = service.lifecycle
        self.offline = service.offline

    def poll_once(self) -> None:
        self.service.reconciler.handovers()
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
                observed = self.service.sites.driver(site).poll(tracked)
            except SiteError as exc:
                log.warning("polling site %s failed: %s", site, exc)
                continue
            finally:
                self.queries += 1
            for job in jobs:
                seen = observed.get(str(job.job_id)) or self.lifecycle.self_reported(job)
                if seen is not None:
                    self.lifecycle.apply(job, seen)
        self.offline.sync_active()  # snapshots of offline jobs into their runs


def start_background(
    service: ComputeService, lock_path: Path, interval: float, sweep_every: float
) -> None:
    """Run the poller in a daemon thread of whichever worker holds ``lock_path``; it also
    sweeps crash leftovers when it takes the lock and every ``sweep_every`` seconds."""

    poller = Poller(service)

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
            swept = -math.inf
            while not stop.wait(interval):
                if time.monotonic() - swept >= sweep_every:
                    service.reconciler.sweep()
                    swept = time.monotonic()
                try:
                    poller.poll_once()
                except Exception:
                    log.exception("poll cycle failed")

    threading.Thread(target=loop, name="mantik-poller", daemon=True).start()
