"""Submitting runs: unpack, validate, create the MLflow run, mint the job token, hand over;
and after that, what users ask of a run (status, logs, cancel)."""

from __future__ import annotations

import logging
import math
import shutil
import time
from pathlib import Path

from sqlalchemy import select

from mantik.compute.config.model import BackendConfig
from mantik.compute.config.units import unicore_runtime
from mantik.compute.states import JobState
from mantik.server import coordination
from mantik.server.compute import submission_keys
from mantik.server.compute.accounts import folders
from mantik.server.compute.accounts.identity import JobIdentity
from mantik.server.compute.accounts.policy import RunAs
from mantik.server.compute.accounts.records import identity_of
from mantik.server.compute.drivers.site_config import SiteConfig
from mantik.server.compute.errors import (
    ExperimentNotFound,
    Forbidden,
    InvalidSubmission,
    LogRemoved,
    RunNotFound,
    SiteError,
)
from mantik.server.compute.handover import HandOver, Job
from mantik.server.compute.images import ImageCache
from mantik.server.compute.job_images import choose_image, images_in_use
from mantik.server.compute.job_log import KEPT, JobLog, Window
from mantik.server.compute.jobs import SiteCredentials, TrackedJob
from mantik.server.compute.leftovers import STAGING, marked_name
from mantik.server.compute.lifecycle import Lifecycle
from mantik.server.compute.offline.syncer import OfflineSyncer
from mantik.server.compute.reconcile import Reconciler
from mantik.server.compute.runs import RunStore
from mantik.server.compute.sites import Sites
from mantik.server.compute.submission import Submission, Submitted, prepare
from mantik.server.compute.submission_keys import SubmissionKeys
from mantik.server.db import Database
from mantik.server.identity.service import IdentityService
from mantik.server.identity.tokens import TokenService
from mantik.server.models import ComputeJob
from mantik.server.settings import ServerSettings
from mantik.server.tracking.permissions import can_access

log = logging.getLogger("mantik.compute")

__all__ = ["ComputeService", "Submission", "Submitted"]


class ComputeService:
    def __init__(
        self,
        settings: ServerSettings,
        db: Database,
        tokens: TokenService,
        identity: IdentityService,
    ) -> None:
        self.settings = settings
        self.db = db
        self.tokens = tokens
        self.identity = identity
        self.runs = RunStore(settings)
        self.sites = Sites.configured(settings)
        self.run_as = RunAs(db, settings.job_uids)
        self.locks = coordination.for_engine(db.engine, settings.data_dir)
        scratch = settings.data_dir / "offline-sync"
        self.offline = OfflineSyncer(db, self.runs, self.sites, scratch, self.locks)
        self.lifecycle = Lifecycle(db, self.runs, identity, self.offline)
        self.reconciler = Reconciler(settings, db, self.runs, self.sites, self.lifecycle)
        self.handover = HandOver(settings, db, tokens, identity, self.sites, self.runs)
        self.keys = SubmissionKeys(db)
        self._refreshed: dict[str, float] = {}  # run id → when its offline files were fetched

    # --- access --------------------------------------------------------------------------

    def require(self, username: str, experiment_id: str, action: str) -> None:
        if not self.runs.experiment_exists(experiment_id):
            raise ExperimentNotFound(f"Experiment {experiment_id} does not exist.")
        if not can_access(username, experiment_id, "update" if action == "update" else "read"):
            verb = "submit runs to" if action == "update" else "see"
            raise Forbidden(f"You may not {verb} experiment {experiment_id}.")

    def job(self, username: str, run_id: str, action: str = "read") -> ComputeJob:
        with self.db.session() as session:
            job = session.get(ComputeJob, run_id)
        if job is None:
            raise RunNotFound(f"No submitted run {run_id}.")
        self.require(username, job.experiment_id, action)
        return job

    # --- sites and images ----------------------------------------------------------------

    def site_for(self, config: BackendConfig) -> SiteConfig:
        return self.site_of(config.compute_site, config.unicore_api_url)

    def site_of(self, compute_site: str | None, unicore_api_url: str | None) -> SiteConfig:
        """The site a config's ComputeSite or UnicoreApiUrl names (default: local)."""
        if compute_site:
            site = self.sites.get(compute_site)
            if site is None:
                known = ", ".join(sorted(self.sites))
                raise InvalidSubmission(
                    f"ComputeSite {compute_site!r} is not configured here: {known}."
                )
            return site
        if unicore_api_url:
            # Exact match only: no request ever leaves for a URL the admin did not list.
            wanted = unicore_api_url.rstrip("/")
            candidates = self.sites.named_by_url()
            for site in candidates:
                if site.url and site.url.rstrip("/") == wanted:
                    return site
            allowed = [s.url for s in candidates]
            raise InvalidSubmission(
                f"UnicoreApiUrl {unicore_api_url!r} is not a site this platform may use"
                + (f"; allowed: {', '.join(u for u in allowed if u)}" if allowed else "")
                + ". Ask the platform admin, or set ComputeSite."
            )
        return self.sites["local"]

    def image_cache(self, site: SiteConfig) -> ImageCache:
        return ImageCache(
            self.sites.image_cache_dir(site),
            self.settings.image_cache_bytes,
            lambda: images_in_use(self.db, site.name),
            self.locks,
        )

    # --- submission ----------------------------------------------------------------------

    def submit(
        self, username: str, submission: Submission, idempotency_key: str | None = None
    ) -> tuple[Submitted, bool]:
        """The submitted run, and whether it was made by an earlier request with the same
        ``idempotency_key`` (a retry: nothing new is made)."""
        self.require(username, submission.experiment_id, "update")
        if idempotency_key is None:
            return self._submit_once(username, submission), False
        digest = submission_keys.fingerprint(submission, submission.archive_sha256)
        earlier = self.keys.claim(username, idempotency_key, digest)
        if earlier is not None:
            return self._submitted(earlier), True
        try:
            done = self._submit_once(username, submission)
        except BaseException:
            self.keys.release(username, idempotency_key)
            raise
        self.keys.bind(username, idempotency_key, done.run_id)
        return done, False

    def _submitted(self, run_id: str) -> Submitted:
        with self.db.session() as session:
            job = session.get(ComputeJob, run_id)
        if job is None:  # its run was removed since: the key names nothing any more
            raise RunNotFound(f"The run {run_id} this Idempotency-Key made is gone.")
        return Submitted(job.experiment_id, job.run_id, job.job_id or "", job.site)

    def _submit_once(self, username: str, submission: Submission) -> Submitted:
        staging = self.settings.data_dir / STAGING / marked_name("")
        try:
            return self._submit(username, submission, staging)
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def _submit(self, username: str, submission: Submission, staging: Path) -> Submitted:
        prepared = prepare(submission, staging, self.settings.max_unpacked_bytes)
        site = self.site_for(prepared.config)
        runtime = prepared.config.resources.runtime
        if site.max_runtime and runtime and runtime > site.max_runtime:
            raise InvalidSubmission(
                f"Resources.Runtime {unicore_runtime(runtime)} is more than site {site.name!r} "
                f"grants: at most {unicore_runtime(site.max_runtime)}."
            )
        if prepared.config.launcher and not site.capabilities.launches_tasks:
            raise InvalidSubmission(
                f'"Launcher": "{prepared.config.launcher}" applies to SLURM sites only, and '
                f"site {site.name!r} is a {site.driver} site: remove Launcher (and "
                "Resources.TasksPerNode, CPUsPerTask), or set ComputeSite to a SLURM site."
            )
        self.sites.driver(site.name)  # an unusable driver fails before the run exists
        identity = self.job_identity(site, username)
        work_root = self.sites.work_root(site)
        folders.prepare_root(work_root, identity)  # a folder the account cannot reach, too
        image = choose_image(
            prepared.config,
            prepared.project_dir,
            site,
            submission.image_digest,
            self.image_cache(site),
        )
        parameters = {k: str(v) for k, v in submission.parameters.items()}
        run = self.runs.create(
            submission.experiment_id,
            run_name=submission.run_name,
            tags={
                "mlflow.user": username,
                "mlflow.source.type": "PROJECT",
                "mlflow.project.entryPoint": prepared.entry_point,
                "mlflow.project.backend": "mantik",
                "mantik.site": site.name,
                "mantik.entry_point": prepared.entry_point,
            },
            params=parameters,
        )
        workdir = work_root / run.info.run_id
        job = Job(username, submission, run, site, prepared, workdir, image, identity, staging)
        return self.handover.run(job)

    def job_identity(self, site: SiteConfig, username: str) -> JobIdentity:
        """Who ``username``'s jobs on ``site`` run as (UNICORE: the user's login there)."""
        if not site.capabilities.shares_filesystem:
            return JobIdentity.platform()
        return self.run_as.identity(site, username, is_admin=self.identity.is_admin(username))

    # --- after submission ----------------------------------------------------------------

    def status(
        self, username: str, run_id: str, credentials: SiteCredentials | None = None
    ) -> ComputeJob:
        """The job's state; with credentials, fresh from sites that need them to answer."""
        job = self.job(username, run_id)
        if credentials is not None and job.job_id and self._observable(job):
            try:
                seen = self.sites.driver(job.site).observe(
                    TrackedJob(job.job_id, Path(job.workdir)), credentials
                )
            except SiteError:
                if JobState(job.state).terminal:  # LOST, and the site forgot the job too
                    return job
                raise
            if seen is not None:
                self.lifecycle.apply(job, seen, credentials)
                job = self.job(username, run_id)
        return job

    def _observable(self, job: ComputeJob) -> bool:
        """Worth asking the site: a job still going, or one called LOST on a site that only
        answers with credentials (it may have ended well, with offline data to sync)."""
        if job.site not in self.sites:  # the admin removed the site: nobody to ask
            return False
        state = JobState(job.state)
        return not state.terminal or (
            state is JobState.LOST and self.sites[job.site].capabilities.needs_credentials
        )

    def refresh_offline(self, run_id: str, credentials: SiteCredentials) -> None:
        """Sync an offline job on a site read only with credentials (after a status request
        that carried them; at most once per snapshot period and run, per worker)."""
        with self.db.session() as session:
            job = session.get(ComputeJob, run_id)
        if job is None or not job.job_id or JobState(job.state).terminal:
            return
        if job.site not in self.sites or not self.sites[job.site].capabilities.needs_credentials:
            return  # the poller reads this site's folders by itself
        now = time.monotonic()
        if now - self._refreshed.get(run_id, -math.inf) < self.settings.offline_snapshot_seconds:
            return
        self._refreshed[run_id] = now
        try:
            self.offline.sync(job, final=False, wait=False, credentials=credentials)
        except Exception as exc:  # the next request retries; the final sync is what counts
            log.warning("offline sync of run %s failed: %s", run_id, exc)

    def cancel(
        self, username: str, run_id: str, credentials: SiteCredentials | None = None
    ) -> ComputeJob:
        job = self.job(username, run_id, "update")
        if not JobState(job.state).terminal and job.job_id:
            tracked = TrackedJob(job.job_id, Path(job.workdir), identity_of(job))
            self.sites.driver(job.site).cancel(tracked, credentials)
        return job

    def logs(
        self,
        username: str,
        run_id: str,
        credentials: SiteCredentials | None = None,
        window: Window = KEPT,
    ) -> JobLog:
        job = self.job(username, run_id)
        if not job.job_id:
            return JobLog()
        site = self.sites.get(job.site)
        shared = site is not None and site.capabilities.shares_filesystem
        if shared and JobState(job.state).terminal and not Path(job.workdir).exists():
            raise LogRemoved(
                f"The folder of run {run_id} was removed after the job ended (the platform "
                "keeps job folders for MANTIK_JOB_RETENTION_DAYS); its log is in the run's "
                "artifacts: mantik/job.log."
            )
        tracked = TrackedJob(job.job_id, Path(job.workdir))
        return self.sites.driver(job.site).read_log(tracked, credentials, window)

    def list_jobs(
        self,
        username: str,
        experiment_id: str | None = None,
        state: str | None = None,
        credentials: SiteCredentials | None = None,
    ) -> list[ComputeJob]:
        """The user's visible jobs; with credentials, the going ones on sites that answer
        only with them (and can be asked about all at once) are observed first."""
        if credentials is not None:
            self._observe_going(username, credentials)
        return self._visible_jobs(username, experiment_id, state)

    def own_jobs(self, username: str, experiment_id: str | None = None) -> list[ComputeJob]:
        """The jobs ``username`` submitted, in experiments they may still read (newest first;
        no site is asked)."""
        return self._visible_jobs(username, experiment_id, None, submitted_by=username)

    def needs_credentials(self, site_name: str) -> bool:
        """Whether the site answers about its jobs only with the user's own login."""
        site = self.sites.get(site_name)
        return site is not None and site.capabilities.needs_credentials

    def _observe_going(self, username: str, credentials: SiteCredentials) -> None:
        going: dict[str, list[ComputeJob]] = {}
        for job in self._visible_jobs(username, None, None):
            site = self.sites.get(job.site)
            if site and site.capabilities.needs_credentials and self._observable(job):
                going.setdefault(job.site, []).append(job)
        for name, jobs in going.items():
            driver = self.sites.driver(name)
            if not driver.observes_many_at_once:
                continue  # one site request per job: only when asked for that job
            tracked = [TrackedJob(j.job_id or "", Path(j.workdir)) for j in jobs if j.job_id]
            try:
                seen = driver.observe_many(tracked, credentials)
            except SiteError as exc:  # the list still answers; the states are the last known
                log.warning("observing the jobs on site %s failed: %s", name, exc)
                continue
            for job in jobs:
                if job.job_id in seen:
                    self.lifecycle.apply(job, seen[job.job_id], credentials)

    def _visible_jobs(
        self,
        username: str,
        experiment_id: str | None,
        state: str | None,
        submitted_by: str | None = None,
    ) -> list[ComputeJob]:
        with self.db.session() as session:
            query = select(ComputeJob).order_by(ComputeJob.submitted_at.desc())
            if submitted_by is not None:
                query = query.where(ComputeJob.username == submitted_by)
            if experiment_id is not None:
                query = query.where(ComputeJob.experiment_id == experiment_id)
            if state is not None:
                query = query.where(ComputeJob.state == state.upper())
            jobs = list(session.scalars(query.limit(1000)))
        visible: dict[str, bool] = {}
        result = []
        for job in jobs:
            if job.experiment_id not in visible:
                visible[job.experiment_id] = can_access(username, job.experiment_id, "read")
            if visible[job.experiment_id]:
                result.append(job)
        return result
