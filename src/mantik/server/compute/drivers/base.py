"""The driver interface. The base class writes the job folder; a driver fills in how the
scheduler is asked to run, watch and stop it. Drivers raise the ``SiteError`` kinds of
:mod:`mantik.server.compute.errors`, with messages for the user."""

from __future__ import annotations

import os
import sys
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path

from mantik.compute.states import JobState, Observation
from mantik.server.compute.accounts.identity import JobIdentity
from mantik.server.compute.drivers.site_config import SiteConfig
from mantik.server.compute.drivers.wrapper import render_wrapper
from mantik.server.compute.job_folder import JobFolder
from mantik.server.compute.job_log import KEPT, JobLog, LocalFolder, Window
from mantik.server.compute.job_log import read as read_job_log
from mantik.server.compute.jobs import SiteCredentials, TrackedJob
from mantik.server.compute.spec import JobSpec
from mantik.server.identity.keys import write_secret_file

# The only variables a job inherits from the platform process: its environment holds
# secrets (database URIs, the Flask key) that must never reach a job.
_INHERITED = ("PATH", "HOME", "USER", "LOGNAME", "LANG", "LC_ALL", "TZ", "TMPDIR", "SHELL")


def job_environment(identity: JobIdentity | None = None) -> dict[str, str]:
    """The environment job commands start with: under another account nothing of the
    platform's; as the platform, the listed variables."""
    if identity is not None and not identity.is_platform:
        return identity.environment()
    env = {name: os.environ[name] for name in _INHERITED if name in os.environ}
    # A job without container or venv finds the platform's Python (and its MLflow) first:
    # what a laptop or a login-node deployment expects.
    python_bin = os.path.dirname(sys.executable)
    env["PATH"] = os.pathsep.join([python_bin, env.get("PATH", os.defpath)])
    return env


class Driver(ABC):
    # observe_many asks the site once for all jobs (a list request may then observe them).
    observes_many_at_once = False

    def __init__(self, site: SiteConfig) -> None:
        self.site = site

    @property
    def needs_credentials(self) -> bool:
        """The platform sees this site's job folders only with the user's credentials."""
        return self.site.capabilities.needs_credentials

    def header(self, spec: JobSpec) -> list[str]:
        """Lines after the shebang (scheduler directives or comments)."""
        return []

    def prologue(self, spec: JobSpec) -> list[str]:
        """Commands that prepare the job folder on the node before the wrapper runs."""
        return []

    def write_job(self, spec: JobSpec, job_token: str, into: JobFolder | None = None) -> str:
        """Write the wrapper (0700) and the token (0600) into the job folder, or into
        ``into`` where it is staged (paths in the script are the job folder's); return it."""
        folder = into or spec.folder
        script = render_wrapper(spec, self.header(spec), self.prologue(spec))
        folder.mantik.mkdir(mode=0o700, parents=True, exist_ok=True)
        write_secret_file(folder.token, job_token.encode())
        folder.script.write_text(script)
        os.chmod(folder.script, 0o700)
        return script

    @abstractmethod
    def submit(self, spec: JobSpec, credentials: SiteCredentials | None = None) -> str:
        """Hand the written job to the site; return its job id."""

    @abstractmethod
    def poll(self, jobs: Sequence[TrackedJob]) -> dict[str, Observation]:
        """Observe ``jobs`` with one scheduler query. Jobs the driver cannot observe without
        the user's credentials are left out (the poller then relies on the job's report)."""

    @abstractmethod
    def cancel(self, job: TrackedJob, credentials: SiteCredentials | None = None) -> None:
        """Ask the site to stop the job (idempotent)."""

    def find(self, name: str, workdir: Path) -> str | None:
        """The id of the job called ``name`` in ``workdir`` if the site knows it (after a
        hand-over the platform did not live to record); None where it cannot tell."""
        return None

    def observe(self, job: TrackedJob, credentials: SiteCredentials | None) -> Observation | None:
        """The state of one job, e.g. when a user asks with credentials in hand."""
        return self.poll([job]).get(job.job_id)

    def observe_many(
        self, jobs: Sequence[TrackedJob], credentials: SiteCredentials | None
    ) -> dict[str, Observation]:
        """The states of several jobs with the user's credentials (one by one here; a
        driver with a cheaper way overrides it)."""
        seen = {}
        for job in jobs:
            observation = self.observe(job, credentials)
            if observation is not None:
                seen[job.job_id] = observation
        return seen

    def read_log(
        self, job: TrackedJob, credentials: SiteCredentials | None = None, window: Window = KEPT
    ) -> JobLog:
        """The bytes of the job's log that ``window`` asks for, streamed from its folder."""
        # The job owns its folder: a symlinked log must not expose platform files.
        return read_job_log(LocalFolder(job.workdir), window)

    def offline_files(
        self, job: TrackedJob, credentials: SiteCredentials | None = None, *, final: bool = False
    ) -> Path | None:
        """The job's ``.mantik`` folder as the platform reads it for offline tracking (here: a
        filesystem shared with the nodes); None where it cannot be read (now)."""
        return JobFolder(job.workdir).mantik

    @staticmethod
    def exit_code(workdir: Path) -> int | None:
        """The exit code the wrapper recorded, if it got that far."""
        return JobFolder(workdir).exit_code()

    @classmethod
    def finished(cls, workdir: Path) -> Observation:
        """The outcome of a job the scheduler no longer lists."""
        return cls.outcome(cls.exit_code(workdir))

    @staticmethod
    def outcome(code: int | None) -> Observation:
        """The outcome of a job that ended with the exit code its wrapper recorded (None:
        it recorded none)."""
        if code is None:
            return Observation(JobState.LOST, "the job ended without recording an exit code")
        if code == 0:
            return Observation(JobState.COMPLETED, exit_code=0)
        if code == 143:
            return Observation(JobState.CANCELLED, "terminated", exit_code=code)
        return Observation(JobState.FAILED, f"exit code {code}", exit_code=code)
