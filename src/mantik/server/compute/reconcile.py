"""After a crash: hand-overs nobody finished, runs never handed over, scratch files, and job
folders past their retention.

:meth:`Reconciler.handovers` runs every poll cycle (one query); :meth:`Reconciler.sweep` at
start-up and every ``sweep_seconds``, in the worker that polls.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Collection
from datetime import timedelta
from pathlib import Path

from mlflow.entities import Experiment, ViewType
from mlflow.tracking import MlflowClient
from sqlalchemy import select

from mantik.compute.states import JobState, Observation
from mantik.server.compute.accounts import folders
from mantik.server.compute.accounts.identity import JobIdentity
from mantik.server.compute.accounts.records import identity_of
from mantik.server.compute.drivers.base import Driver
from mantik.server.compute.errors import SiteError
from mantik.server.compute.leftovers import (
    mark_abandoned,
    sweep_partial_artifacts,
    sweep_scratch,
)
from mantik.server.compute.lifecycle import Lifecycle
from mantik.server.compute.runs import RunStore
from mantik.server.compute.sites import Sites
from mantik.server.compute.spec import job_name
from mantik.server.db import Database
from mantik.server.models import ComputeJob, utcnow
from mantik.server.settings import ServerSettings

log = logging.getLogger("mantik.sweep")
# Another host's hand-over or scratch file is abandoned after this long (a hand-over that
# uploads a large image to UNICORE takes minutes, never hours).
FOREIGN_MAX_AGE = 6 * 3600.0
# A run of the platform's with no job record is half-made after this long; a submission
# in flight records its job within seconds of creating its run.
_UNRECORDED_RUN_AGE = 600.0
# MLflow's partial artifact files are written continuously while an upload goes on.
_PARTIAL_IDLE = 600.0
_NEVER_HANDED_OVER = "the platform stopped before the site accepted the job; nothing ran"


class Reconciler:
    def __init__(
        self,
        settings: ServerSettings,
        db: Database,
        runs: RunStore,
        sites: Sites,
        lifecycle: Lifecycle,
    ) -> None:
        self.settings = settings
        self.db = db
        self.runs = runs
        self.sites = sites
        self.lifecycle = lifecycle

    # --- hand-overs ----------------------------------------------------------------------

    def handovers(self, sites: Collection[str] | None = None) -> None:
        """Adopt or end the records of hand-overs whose worker is gone (on ``sites``)."""
        query = select(ComputeJob).where(ComputeJob.job_id.is_(None))
        if sites is not None:
            query = query.where(ComputeJob.site.in_(list(sites)))
        with self.db.session() as session:
            rows = list(session.scalars(query))
        now = utcnow()
        for job in rows:
            age = (now - job.submitted_at).total_seconds()
            if JobState(job.state).terminal or not mark_abandoned(
                job.handover_by, age, FOREIGN_MAX_AGE
            ):
                continue
            try:
                self._reconcile(job)
            except SiteError as exc:  # the next cycle asks again
                log.warning("reconciling run %s: %s", job.run_id, exc)

    def _reconcile(self, job: ComputeJob) -> None:
        workdir = Path(job.workdir)
        driver = self.sites.driver(job.site) if job.site in self.sites else None
        found = driver.find(job_name(job.run_id), workdir) if driver else None
        if found is not None:
            log.info("adopting job %s of run %s after a crashed hand-over", found, job.run_id)
            with self.db.session() as session:
                row = session.get(ComputeJob, job.run_id)
                if row is not None:
                    row.job_id, row.handover_by = found, None
            self.runs.set_tags(job.run_id, {"mantik.job_id": found})
            return
        code = Driver.exit_code(workdir) if workdir.is_absolute() else None
        if code is not None:  # it ran and ended before anyone could look
            seen = Driver.outcome(code)
        elif driver is not None and driver.needs_credentials:
            seen = Observation(
                JobState.LOST,
                "the platform stopped while handing the job to the site; if the site "
                f"accepted it, it runs there as {job_name(job.run_id)}",
            )
        else:
            seen = Observation(JobState.FAILED, _NEVER_HANDED_OVER)
        self.lifecycle.apply(job, seen)
        with self.db.session() as session:
            row = session.get(ComputeJob, job.run_id)
            if row is not None and JobState(row.state).terminal:
                row.handover_by = None

    # --- the periodic sweep --------------------------------------------------------------

    def sweep(self) -> None:
        """Everything a crash or time leaves behind; each part on its own."""
        for part in (self._scratch, self._unrecorded_runs, self._expired_folders):
            try:
                part()
            except Exception:
                log.exception("sweep step %s failed", part.__name__)

    def _scratch(self) -> None:
        removed = sweep_scratch(self.settings.data_dir, FOREIGN_MAX_AGE)
        artifacts = self.settings.resolved_artifacts_destination
        if "://" not in artifacts or artifacts.startswith("file://"):
            root = Path(artifacts.removeprefix("file://"))
            removed += sweep_partial_artifacts(root, _PARTIAL_IDLE)
        if removed:
            log.info("removed %d leftovers of interrupted uploads and submissions", removed)

    def _unrecorded_runs(self) -> None:
        """Runs created for a submission that crashed before its job was recorded."""
        client = self.runs.client
        experiments = [e.experiment_id for e in _all_experiments(client)]
        cutoff = int((time.time() - _UNRECORDED_RUN_AGE) * 1000)
        query = (
            "tags.`mlflow.project.backend` = 'mantik' and attributes.status = 'SCHEDULED' "
            f"and attributes.start_time < {cutoff}"
        )
        for start in range(0, len(experiments), 100):
            token = None
            while True:
                page = client.search_runs(
                    experiments[start : start + 100], query, max_results=1000, page_token=token
                )
                self._end_unrecorded([r.info.run_id for r in page])
                token = page.token
                if not token:
                    break

    def _end_unrecorded(self, run_ids: list[str]) -> None:
        if not run_ids:
            return
        with self.db.session() as session:
            query = select(ComputeJob.run_id).where(ComputeJob.run_id.in_(run_ids))
            recorded = set(session.scalars(query))
        for run_id in run_ids:
            if run_id not in recorded:
                log.info("ending run %s: its submission never reached a site", run_id)
                self.runs.set_tags(run_id, {"mantik.job.reason": _NEVER_HANDED_OVER})
                self.runs.set_status(run_id, "FAILED", terminal=True)

    def _expired_folders(self) -> None:
        days = self.settings.job_retention_days
        if not days:
            return
        cutoff = utcnow() - timedelta(days=days)
        with self.db.session() as session:
            query = select(ComputeJob).where(ComputeJob.finished_at < cutoff)
            ended = list(session.scalars(query))
        for job in ended:
            site = self.sites.get(job.site)
            workdir = Path(job.workdir)
            if site is None or not site.capabilities.shares_filesystem or not workdir.exists():
                continue  # remote folders are the site's to clean
            log.info("removing the folder of run %s, ended more than %g days ago", job.run_id, days)
            folders.remove(workdir, identity_of(job) or JobIdentity.platform())


def _all_experiments(client: MlflowClient) -> list[Experiment]:
    found: list[Experiment] = []
    token = None
    while True:
        page = client.search_experiments(
            view_type=ViewType.ACTIVE_ONLY, max_results=1000, page_token=token
        )
        found += list(page)
        token = page.token
        if not token:
            return found
