"""Submitting runs: unpack, validate, create the MLflow run, mint the job token, hand over."""

from __future__ import annotations

import json
import logging
import math
import shutil
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select

from mantik._exceptions import ConfigurationError
from mantik.compute.archive import UnsafeArchive, safe_extract
from mantik.compute.config import BackendConfig, load_backend_config, validate_backend_config
from mantik.compute.project import load_project
from mantik.compute.states import JobState, Observation
from mantik.server.compute.drivers import (
    Driver,
    DriverError,
    SiteCredentials,
    TrackedJob,
    make_driver,
)
from mantik.server.compute.errors import ComputeError
from mantik.server.compute.images import DIGEST_MARKER, ImageCache, check_digest
from mantik.server.compute.offline_sync import OfflineSyncer
from mantik.server.compute.runs import RunStore
from mantik.server.compute.sites import SiteConfig, configured_sites, image_cache_dir, work_root
from mantik.server.compute.spec import STAGED_IMAGE, JobSpec
from mantik.server.config import ServerSettings
from mantik.server.db import Database
from mantik.server.identity.service import IdentityService
from mantik.server.identity.tokens import TokenService
from mantik.server.models import ComputeJob
from mantik.server.tracking.permissions import can_access

log = logging.getLogger("mantik.compute")
DEFAULT_RUNTIME_SECONDS = 24 * 3600
_MAX_RATIO = 1100


@dataclass(frozen=True)
class Submission:
    experiment_id: str
    entry_point: str
    parameters: Mapping[str, Any]
    archive: Path
    backend_config_path: str | None = None
    backend_config: Mapping[str, Any] | None = None
    run_name: str | None = None
    project: str | None = None  # accounting project (MANTIK_UNICORE_PROJECT)
    credentials: SiteCredentials | None = None  # used for this request only
    image_digest: str | None = None  # sha256 of an image in the site's image cache


@dataclass(frozen=True)
class Submitted:
    experiment_id: str
    run_id: str
    job_id: str
    site: str


@dataclass(frozen=True)
class Image:
    """The image a job runs: its path on the site, and where it comes from."""

    path: str
    in_project: bool = False  # relative to the uploaded project (mantik 0.1.x clients)
    digest: str | None = None  # from the site's image cache
    stage_from: Path | None = None  # platform file the driver copies to the site


def _inside(root: Path, relative: str, what: str) -> Path:
    path = (root / relative).resolve()
    if not path.is_relative_to(root.resolve()):
        raise ComputeError(400, f"{what} {relative!r} lies outside the MLproject directory.")
    return path


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
        self.sites = configured_sites(settings)
        self._drivers: dict[str, Driver] = {}
        self.offline = OfflineSyncer(self)
        # Set by the poller: how a fresh observation is applied (status, tags, token; the
        # final offline sync, with the credentials of the request that observed it).
        self.on_observation: (
            Callable[[ComputeJob, Observation, SiteCredentials | None], None] | None
        ) = None
        self._refreshed: dict[str, float] = {}  # run id → when its offline files were fetched

    def driver(self, site: str) -> Driver:
        if site not in self._drivers:
            self._drivers[site] = make_driver(self.sites[site])
        return self._drivers[site]

    # --- access --------------------------------------------------------------------------

    def require(self, username: str, experiment_id: str, action: str) -> None:
        if not self.runs.experiment_exists(experiment_id):
            raise ComputeError(404, f"Experiment {experiment_id} does not exist.")
        if not can_access(username, experiment_id, "update" if action == "update" else "read"):
            verb = "submit runs to" if action == "update" else "see"
            raise ComputeError(403, f"You may not {verb} experiment {experiment_id}.")

    def job(self, username: str, run_id: str, action: str = "read") -> ComputeJob:
        with self.db.session() as session:
            job = session.get(ComputeJob, run_id)
        if job is None:
            raise ComputeError(404, f"No submitted run {run_id}.")
        self.require(username, job.experiment_id, action)
        return job

    # --- submission ----------------------------------------------------------------------

    def site_for(self, config: BackendConfig) -> SiteConfig:
        return self.site_of(config.compute_site, config.unicore_api_url)

    def site_of(self, compute_site: str | None, unicore_api_url: str | None) -> SiteConfig:
        """The site a config's ComputeSite or UnicoreApiUrl names (default: local)."""
        if compute_site:
            site = self.sites.get(compute_site)
            if site is None:
                known = ", ".join(sorted(self.sites))
                raise ComputeError(
                    400, f"ComputeSite {compute_site!r} is not configured here: {known}."
                )
            return site
        if unicore_api_url:
            # Exact match only: no request ever leaves for a URL the admin did not list.
            wanted = unicore_api_url.rstrip("/")
            for site in self.sites.values():
                if site.driver == "unicore" and site.url and site.url.rstrip("/") == wanted:
                    return site
            allowed = [s.url for s in self.sites.values() if s.driver == "unicore"]
            raise ComputeError(
                400,
                f"UnicoreApiUrl {unicore_api_url!r} is not a site this platform may use"
                + (f"; allowed: {', '.join(u for u in allowed if u)}" if allowed else "")
                + ". Ask the platform admin, or set ComputeSite.",
            )
        return self.sites["local"]

    # --- images --------------------------------------------------------------------------

    def image_cache(self, site: SiteConfig) -> ImageCache:
        return ImageCache(
            image_cache_dir(self.settings, site),
            self.settings.image_cache_bytes,
            lambda: self.images_in_use(site.name),
        )

    def images_in_use(self, site: str) -> set[str]:
        """Digests of the cached images that unfinished jobs of ``site`` run."""
        waiting = [state.value for state in JobState if not state.terminal]
        with self.db.session() as session:
            folders = session.scalars(
                select(ComputeJob.workdir).where(
                    ComputeJob.site == site, ComputeJob.state.in_(waiting)
                )
            ).all()
        digests = set()
        for folder in folders:
            try:
                digests.add((Path(folder) / ".mantik" / DIGEST_MARKER).read_text().strip())
            except OSError:
                continue
        return digests

    def submit(self, username: str, submission: Submission) -> Submitted:
        self.require(username, submission.experiment_id, "update")
        staging = self.settings.data_dir / "staging" / uuid.uuid4().hex
        try:
            return self._submit(username, submission, staging)
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def _prepare(
        self, submission: Submission, staging: Path
    ) -> tuple[BackendConfig, str, str, Path]:
        """Unpack and validate everything; returns config, command, entry point, project dir."""
        project_dir = staging / "project"
        try:
            # Deflate cannot exceed ≈ 1032:1, and the unpacked size is capped while writing:
            # a zero-filled data file (1000:1) is legitimate, a bomb still hits the cap.
            safe_extract(
                submission.archive,
                project_dir,
                max_bytes=self.settings.max_unpacked_bytes,
                max_ratio=_MAX_RATIO,
            )
        except UnsafeArchive as exc:
            raise ComputeError(400, f"The uploaded project was refused: {exc}") from exc
        try:
            if submission.backend_config is not None:
                config = validate_backend_config(
                    dict(submission.backend_config), source="the backend config"
                )
            elif submission.backend_config_path:
                path = _inside(project_dir, submission.backend_config_path, "backend config")
                config = load_backend_config(path)
            else:
                raise ComputeError(400, "No backend configuration was sent.")
            project = load_project(project_dir)
            entry = project.entry_point(submission.entry_point)
            command = entry.render(submission.parameters)
        except ConfigurationError as exc:
            raise ComputeError(400, str(exc)) from exc
        return config, command, entry.name, project_dir

    def _submit(self, username: str, submission: Submission, staging: Path) -> Submitted:
        config, command, entry_point, project_dir = self._prepare(submission, staging)
        site = self.site_for(config)
        driver = self.driver(site.name)
        image = self._image(config, project_dir, site, submission.image_digest)
        parameters = {k: str(v) for k, v in submission.parameters.items()}
        run = self.runs.create(
            submission.experiment_id,
            run_name=submission.run_name,
            tags={
                "mlflow.user": username,
                "mlflow.source.type": "PROJECT",
                "mlflow.project.entryPoint": entry_point,
                "mlflow.project.backend": "mantik",
                "mantik.site": site.name,
                "mantik.entry_point": entry_point,
            },
            params=parameters,
        )
        run_id = run.info.run_id
        workdir = work_root(self.settings, site) / run_id
        try:
            return self._hand_over(
                username,
                submission,
                run,
                site,
                driver,
                config,
                command,
                entry_point,
                project_dir,
                workdir,
                image,
            )
        except BaseException:
            self.runs.discard(run_id)
            shutil.rmtree(workdir, ignore_errors=True)
            raise

    def _image(
        self, config: BackendConfig, project_dir: Path, site: SiteConfig, digest: str | None
    ) -> Image | None:
        if digest is not None:
            return self._cached_image(config, site, digest)
        if config.remote_image:
            # Local and SLURM sites see the platform's filesystem; a UNICORE site's is unseen.
            if site.driver != "unicore" and not Path(config.remote_image).is_file():
                raise ComputeError(
                    400,
                    f"RemoteImage {config.remote_image!r} does not exist on site {site.name!r}. "
                    "Copy the image there first, or set SingularityImage to a local image "
                    "file to have it uploaded.",
                )
            return Image(config.remote_image)
        if config.singularity_image:
            local = _inside(project_dir, config.singularity_image, "SingularityImage")
            if not local.is_file():
                raise ComputeError(
                    400,
                    f"SingularityImage {config.singularity_image!r} was not uploaded with the "
                    "project. Put it in the project folder, or set RemoteImage to a path on "
                    "the site.",
                )
            return Image(str(local.relative_to(project_dir)), in_project=True)
        return None

    def _cached_image(self, config: BackendConfig, site: SiteConfig, digest: str) -> Image:
        check_digest(digest)
        if config.remote_image:
            raise ComputeError(
                400, "image_digest and RemoteImage exclude each other: send only one of them."
            )
        path = self.image_cache(site).use(digest)
        if path is None:
            raise ComputeError(
                400,
                f"The platform holds no image with sha256 {digest} for site {site.name!r}: "
                f"upload it first (PUT /compute-backend/images/{digest}?site={site.name}); "
                "mantik's client does this by itself.",
            )
        if site.driver == "unicore":  # the site cannot see the cache: the driver copies it
            return Image(f"../{STAGED_IMAGE}", digest=digest, stage_from=path)
        return Image(str(path), digest=digest)

    def _hand_over(
        self,
        username: str,
        submission: Submission,
        run: Any,
        site: SiteConfig,
        driver: Driver,
        config: BackendConfig,
        command: str,
        entry_point: str,
        project_dir: Path,
        workdir: Path,
        image: Image | None,
    ) -> Submitted:
        run_id = run.info.run_id
        workdir.mkdir(mode=0o700, parents=True)
        shutil.move(str(project_dir), workdir / "project")
        runtime = config.resources.runtime or DEFAULT_RUNTIME_SECONDS
        ttl = runtime + self.settings.job_queue_allowance_hours * 3600
        token, expires = self.tokens.issue(
            username, "job", ttl, run_id=run_id, experiment_id=submission.experiment_id
        )
        tracking_uri = site.tracking_uri or self.settings.job_tracking_uri or self.settings.base_url
        remote = site.driver == "unicore"
        image_path = image.path if image else None
        if image and image.in_project and not remote:
            image_path = str(workdir / "project" / image.path)
        spec = JobSpec(
            run_id=run_id,
            experiment_id=submission.experiment_id,
            name=f"mantik-{run_id[:12]}",
            command=command,
            workdir=workdir,
            tracking_uri=tracking_uri,
            artifact_url=RunStore.proxied_artifact_url(run, tracking_uri),
            config=config,
            image=image_path,
            image_file=image.stage_from if image else None,
            project=submission.project,
            site_chooses_workdir=remote,
            snapshot_seconds=self.settings.offline_snapshot_seconds,
        )
        driver.write_job(spec, token)
        if image and image.digest:  # keeps the cached image from eviction while the job lives
            (spec.mantik_dir / DIGEST_MARKER).write_text(image.digest)
        (spec.mantik_dir / "backend-config.json").write_text(json.dumps(config.to_wire(), indent=2))
        self.runs.log_artifact(run_id, spec.mantik_dir / "backend-config.json", "mantik")
        self.runs.log_artifact(run_id, spec.script_path, "mantik")
        try:
            job_id = driver.submit(spec, submission.credentials)
        except DriverError as exc:
            raise ComputeError(exc.status, str(exc)) from exc
        self.runs.set_tags(run_id, {"mantik.job_id": job_id})
        claims = self.tokens.verify(token)
        with self.db.session() as session:
            session.add(
                ComputeJob(
                    run_id=run_id,
                    experiment_id=submission.experiment_id,
                    username=username,
                    site=site.name,
                    job_id=job_id,
                    state=JobState.SUBMITTED,
                    entry_point=entry_point,
                    workdir=str(workdir),
                    token_id=claims.token_id,
                    token_expires_at=datetime.fromtimestamp(expires, UTC),
                )
            )
        return Submitted(submission.experiment_id, run_id, job_id, site.name)

    # --- after submission ----------------------------------------------------------------

    def status(
        self, username: str, run_id: str, credentials: SiteCredentials | None = None
    ) -> ComputeJob:
        """The job's state; with credentials, fresh from sites that need them to answer."""
        job = self.job(username, run_id)
        if credentials is not None and job.job_id and self._observable(job):
            try:
                seen = self.driver(job.site).observe(
                    TrackedJob(job.job_id, Path(job.workdir)), credentials
                )
            except DriverError as exc:
                if JobState(job.state).terminal:  # LOST, and the site forgot the job too
                    return job
                raise ComputeError(exc.status, str(exc)) from exc
            if seen is not None and self.on_observation is not None:
                self.on_observation(job, seen, credentials)
                job = self.job(username, run_id)
        return job

    def _observable(self, job: ComputeJob) -> bool:
        """Worth asking the site: a job still going, or one called LOST on a site that only
        answers with credentials (it may have ended well, with offline data to sync)."""
        if job.site not in self.sites:  # the admin removed the site: nobody to ask
            return False
        state = JobState(job.state)
        return not state.terminal or (
            state is JobState.LOST and self.driver(job.site).needs_credentials
        )

    def refresh_offline(self, run_id: str, credentials: SiteCredentials) -> None:
        """Sync an offline job on a site read only with credentials (after a status request
        that carried them; at most once per snapshot period and run, per worker)."""
        with self.db.session() as session:
            job = session.get(ComputeJob, run_id)
        if job is None or not job.job_id or JobState(job.state).terminal:
            return
        if job.site not in self.sites or not self.driver(job.site).needs_credentials:
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
            try:
                self.driver(job.site).cancel(TrackedJob(job.job_id, Path(job.workdir)), credentials)
            except DriverError as exc:
                raise ComputeError(exc.status, str(exc)) from exc
        return job

    def logs(self, username: str, run_id: str, credentials: SiteCredentials | None = None) -> str:
        job = self.job(username, run_id)
        if not job.job_id:
            return ""
        tracked = TrackedJob(job.job_id, Path(job.workdir))
        try:
            return self.driver(job.site).read_log(tracked, credentials)
        except DriverError as exc:
            raise ComputeError(exc.status, str(exc)) from exc

    def list_jobs(
        self, username: str, experiment_id: str | None = None, state: str | None = None
    ) -> list[ComputeJob]:
        with self.db.session() as session:
            query = select(ComputeJob).order_by(ComputeJob.submitted_at.desc())
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
