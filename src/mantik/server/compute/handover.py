"""Handing a prepared submission to its site, so that a job the site accepted always has a
record.

The order is what makes it safe: the job token is issued and the record written (without a
job id, carrying the process mark of the worker handing over) *before* the site is asked;
the site's job id lands in the record right after its answer. A failure before the answer
removes everything (record, run, folder, token); one after it cancels the job it cannot
record. A crash in between leaves a record the reconciler (:mod:`.reconcile`) adopts or
ends.
"""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mantik.compute.states import JobState
from mantik.server.compute.accounts import folders
from mantik.server.compute.accounts.identity import JobIdentity
from mantik.server.compute.accounts.records import run_as_columns
from mantik.server.compute.drivers.site_config import SiteConfig
from mantik.server.compute.errors import SiteFailed
from mantik.server.compute.job_folder import BACKEND_CONFIG, IMAGE_DIGEST, PROJECT, JobFolder
from mantik.server.compute.job_images import Image
from mantik.server.compute.jobs import TrackedJob
from mantik.server.compute.leftovers import process_mark
from mantik.server.compute.runs import RunStore
from mantik.server.compute.sites import Sites
from mantik.server.compute.spec import JobSpec, job_name
from mantik.server.compute.submission import Prepared, Submission, Submitted
from mantik.server.db import Database
from mantik.server.identity.service import IdentityService
from mantik.server.identity.tokens import TokenService
from mantik.server.models import ComputeJob
from mantik.server.settings import ServerSettings

log = logging.getLogger("mantik.compute")
DEFAULT_RUNTIME_SECONDS = 24 * 3600


@dataclass(frozen=True)
class Job:
    """A submission on its way to the site: everything decided, nothing handed over yet."""

    username: str
    submission: Submission
    run: Any
    site: SiteConfig
    prepared: Prepared
    workdir: Path
    image: Image | None
    identity: JobIdentity  # who the job runs as
    staging: Path  # where its folder is built before it is handed to the account

    @property
    def run_id(self) -> str:
        return str(self.run.info.run_id)


@dataclass(frozen=True)
class _Token:
    text: str
    token_id: str
    expires: float


class HandOver:
    def __init__(
        self,
        settings: ServerSettings,
        db: Database,
        tokens: TokenService,
        identity: IdentityService,
        sites: Sites,
        runs: RunStore,
    ) -> None:
        self.settings = settings
        self.db = db
        self.tokens = tokens
        self.identity = identity
        self.sites = sites
        self.runs = runs

    def run(self, job: Job) -> Submitted:
        """Give ``job`` (its MLflow run exists) to its site and record it."""
        try:
            token = self._issue_token(job)
            self._record(job, token)
        except BaseException:
            self._forget(job, None)
            raise
        try:
            job_id = self._submit(job, token)
        except BaseException:
            self._forget(job, token)
            raise
        self._recorded(job, job_id)
        submission = job.submission
        return Submitted(submission.experiment_id, job.run_id, job_id, job.site.name)

    # --- the steps -----------------------------------------------------------------------

    def _issue_token(self, job: Job) -> _Token:
        runtime = job.prepared.config.resources.runtime or DEFAULT_RUNTIME_SECONDS
        ttl = runtime + self.settings.job_queue_allowance_hours * 3600
        text, expires = self.tokens.issue(
            job.username,
            "job",
            ttl,
            run_id=job.run_id,
            experiment_id=job.submission.experiment_id,
        )
        return _Token(text, self.tokens.verify(text).token_id, expires)

    def _record(self, job: Job, token: _Token) -> None:
        with self.db.session() as session:
            session.add(
                ComputeJob(
                    run_id=job.run_id,
                    experiment_id=job.submission.experiment_id,
                    username=job.username,
                    site=job.site.name,
                    job_id=None,
                    handover_by=process_mark(),
                    state=JobState.SUBMITTED,
                    entry_point=job.prepared.entry_point,
                    workdir=str(job.workdir),
                    token_id=token.token_id,
                    token_expires_at=datetime.fromtimestamp(token.expires, UTC),
                    **run_as_columns(job.identity),
                )
            )

    def _submit(self, job: Job, token: _Token) -> str:
        """Write the job folder, install it for the job's account, ask the site."""
        spec = self._spec(job)
        driver = self.sites.driver(job.site.name)
        staged = JobFolder(job.staging / "job")
        staged.root.mkdir(mode=0o700)
        shutil.move(str(job.prepared.project_dir), staged.project)
        driver.write_job(spec, token.text, into=staged)
        if job.image and job.image.digest:  # keeps the cached image while the job lives
            (staged.mantik / IMAGE_DIGEST).write_text(job.image.digest)
        config = job.prepared.config
        (staged.mantik / BACKEND_CONFIG).write_text(json.dumps(config.to_wire(), indent=2))
        self.runs.log_artifact(job.run_id, staged.mantik / BACKEND_CONFIG, "mantik")
        self.runs.log_artifact(job.run_id, staged.script, "mantik")
        folders.install(staged.root, job.workdir, job.identity)
        return driver.submit(spec, job.submission.credentials)

    def _recorded(self, job: Job, job_id: str) -> None:
        """Put the site's job id into the record; if that fails, the job must not run on
        unrecorded (the reconciler ends the record later)."""
        try:
            with self.db.session() as session:
                row = session.get(ComputeJob, job.run_id)
                if row is None:
                    raise LookupError(f"the record of run {job.run_id} vanished")
                row.job_id = job_id
                row.handover_by = None
        except Exception as exc:
            log.error("could not record job %s of run %s: %s", job_id, job.run_id, exc)
            tracked = TrackedJob(job_id, job.workdir, job.identity)
            with contextlib.suppress(Exception):
                self.sites.driver(job.site.name).cancel(tracked, job.submission.credentials)
            raise SiteFailed(
                "The site accepted the job, but the platform could not record it and "
                "cancelled it. Try again in a moment."
            ) from exc
        try:
            self.runs.set_tags(job.run_id, {"mantik.job_id": job_id})
        except Exception as exc:  # the record holds the id; the tag is a convenience
            log.warning("could not tag run %s with its job id: %s", job.run_id, exc)

    def _forget(self, job: Job, token: _Token | None) -> None:
        """Undo a submission the site never accepted: nothing half-created is left."""
        steps: list[tuple[str, Any]] = [
            ("record", lambda: self._delete_record(job.run_id)),
            ("run", lambda: self.runs.discard(job.run_id)),
            ("folder", lambda: folders.remove(job.workdir, job.identity)),
        ]
        if token is not None:
            steps.append(("token", lambda: self.identity.end_token(token.token_id, token.expires)))
        for what, step in steps:
            try:
                step()
            except Exception as exc:  # the reconciler sweeps what is left
                log.warning("could not remove the %s of run %s: %s", what, job.run_id, exc)

    def _delete_record(self, run_id: str) -> None:
        with self.db.session() as session:
            row = session.get(ComputeJob, run_id)
            if row is not None:
                session.delete(row)

    # --- the job as the driver sees it ---------------------------------------------------

    def _path_prefix(self, site: SiteConfig) -> tuple[str, ...]:
        paths = site.job_path if site.job_path is not None else self.settings.job_path_list
        return tuple(str(p) for p in paths)

    def _spec(self, job: Job) -> JobSpec:
        site, image, submission = job.site, job.image, job.submission
        tracking_uri = site.tracking_uri or self.settings.job_tracking_uri or self.settings.base_url
        shared = site.capabilities.shares_filesystem
        image_path = image.path if image else None
        if image and image.in_project and shared:
            image_path = str(job.workdir / PROJECT / image.path)
        return JobSpec(
            run_id=job.run_id,
            experiment_id=submission.experiment_id,
            name=job_name(job.run_id),
            command=job.prepared.command,
            workdir=job.workdir,
            tracking_uri=tracking_uri,
            artifact_url=RunStore.proxied_artifact_url(job.run, tracking_uri),
            config=job.prepared.config,
            image=image_path,
            image_file=image.stage_from if image else None,
            project=submission.project,
            site_chooses_workdir=not shared,
            snapshot_seconds=self.settings.offline_snapshot_seconds,
            identity=None if job.identity.is_platform else job.identity,
            path_prefix=self._path_prefix(site),
            log_max_bytes=self.settings.job_log_max_bytes,
        )
