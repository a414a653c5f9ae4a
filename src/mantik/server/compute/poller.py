"""Keeps MLflow runs in step with their jobs: one scheduler query per site per cycle, each
observation applied by :mod:`.lifecycle`.

Each site is polled by exactly one worker of all replicas: the holder of the site's lease
(:mod:`mantik.server.coordination`); the sweep has a lease of its own. When a holder dies,
another worker takes its leases over within a poll interval or two. Job records live in the
database, so a restarted platform picks up where it left off.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from collections import defaultdict
from collections.abc import Collection
from pathlib import Path

from sqlalchemy import select

from mantik.compute.states import JobState
from mantik.server.compute.errors import SiteError
from mantik.server.compute.jobs import TrackedJob
from mantik.server.compute.service import ComputeService
from mantik.server.coordination import Lease, Locks
from mantik.server.models import ComputeJob

log = logging.getLogger("mantik.poller")


class Poller:
    def __init__(self, service: ComputeService) -> None:
        self.service = service
        self.queries = 0  # scheduler queries made, for the benchmark
        self.lifecycle = service.lifecycle
        self.offline = service.offline

    def poll_once(self, sites: Collection[str] | None = None) -> None:
        """One cycle over ``sites`` (default: all of them)."""
        self.service.reconciler.handovers(sites)
        with self.service.db.session() as session:
            active = [
                job
                for job in session.scalars(select(ComputeJob))
                if not JobState(job.state).terminal
                and job.job_id
                and (sites is None or job.site in sites)
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
        self.offline.sync_active(sites)  # snapshots of offline jobs into their runs


SWEEP_LEASE = "sweep"


def site_lease(site: str) -> str:
    return f"poll:{site}"


class Leases:
    """The leases this worker tries to hold: one per site, and the sweep's."""

    def __init__(self, locks: Locks, sites: Collection[str]) -> None:
        self._leases: dict[str, Lease] = {name: locks.lease(site_lease(name)) for name in sites}
        self._sweep = locks.lease(SWEEP_LEASE)
        self._held: set[str] = set()

    def renew(self) -> tuple[set[str], bool]:
        """The sites this worker polls now, and whether it sweeps."""
        for site, lease in self._leases.items():
            if site in self._held and not lease.held():
                log.warning("lost the lease of site %s; another worker polls it", site)
                self._held.discard(site)
            if site not in self._held and lease.acquire():
                log.info("polling site %s (pid %d)", site, os.getpid())
                self._held.add(site)
        sweeping = self._sweep.held() or self._sweep.acquire()
        return set(self._held), sweeping


def start_background(
    service: ComputeService, locks: Locks, interval: float, sweep_every: float
) -> None:
    """Poll, in a daemon thread, the sites whose leases this worker holds (asking for the
    others every cycle); sweep crash leftovers on taking the sweep lease and every
    ``sweep_every`` seconds while holding it."""

    poller = Poller(service)
    leases = Leases(locks, list(service.sites))

    def loop() -> None:
        stop = threading.Event()
        swept = -math.inf
        while not stop.wait(interval):
            try:
                sites, sweeping = leases.renew()
                if not sweeping:
                    swept = -math.inf  # sweep at once when the lease comes to us
                elif time.monotonic() - swept >= sweep_every:
                    service.reconciler.sweep()
                    swept = time.monotonic()
                if sites:
                    poller.poll_once(sites)
            except Exception:
                log.exception("poll cycle failed")

    threading.Thread(target=loop, name="mantik-poller", daemon=True).start()
