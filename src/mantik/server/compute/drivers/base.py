"""The driver interface. The base class writes the job folder; a driver fills in how the
scheduler is asked to run, watch and stop it."""

from __future__ import annotations

import os
import sys
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from mantik.compute.states import JobState, Observation
from mantik.server.compute.offline_files import read_job_text
from mantik.server.compute.sites import SiteConfig
from mantik.server.compute.spec import JobSpec
from mantik.server.compute.wrapper import TOKEN_FILE, render_wrapper
from mantik.server.identity.keys import write_secret_file


class DriverError(Exception):
    """The site refused or failed; the message is for the user.

    ``status``: the HTTP status the user gets (400 for a request the site cannot run, 401
    for credentials it refused, 502 when the site itself failed).
    """

    def __init__(self, message: str, *, user_error: bool = False, status: int | None = None):
        super().__init__(message)
        self.status = status or (400 if user_error else 502)
        self.user_error = self.status < 500


@dataclass(frozen=True)
class SiteCredentials:
    """A user's credentials for a site, held for one request only (never stored)."""

    username: str
    password: str = field(repr=False)


# The only variables a job inherits from the platform process: its environment holds
# secrets (database URIs, the Flask key) that must never reach a job.
_INHERITED = ("PATH", "HOME", "USER", "LOGNAME", "LANG", "LC_ALL", "TZ", "TMPDIR", "SHELL")


def job_environment() -> dict[str, str]:
    env = {name: os.environ[name] for name in _INHERITED if name in os.environ}
    # A job without container or venv finds the platform's Python (and its MLflow) first:
    # what a laptop or a login-node deployment expects.
    python_bin = os.path.dirname(sys.executable)
    env["PATH"] = os.pathsep.join([python_bin, env.get("PATH", os.defpath)])
    return env


@dataclass(frozen=True)
class TrackedJob:
    job_id: str
    workdir: Path


class Driver(ABC):
    # The platform sees this site's job folders only with the user's credentials (UNICORE).
    needs_credentials = False

    def __init__(self, site: SiteConfig) -> None:
        self.site = site

    def header(self, spec: JobSpec) -> list[str]:
        """Lines after the shebang (scheduler directives or comments)."""
        return []

    def prologue(self, spec: JobSpec) -> list[str]:
        """Commands that prepare the job folder on the node before the wrapper runs."""
        return []

    def write_job(self, spec: JobSpec, job_token: str) -> str:
        """Write the wrapper (0700) and the token (0600) into the job folder; return the script."""
        script = render_wrapper(spec, self.header(spec), self.prologue(spec))
        spec.mantik_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        write_secret_file(spec.mantik_dir / TOKEN_FILE, job_token.encode())
        spec.script_path.write_text(script)
        os.chmod(spec.script_path, 0o700)
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

    def observe(self, job: TrackedJob, credentials: SiteCredentials | None) -> Observation | None:
        """The state of one job, e.g. when a user asks with credentials in hand."""
        return self.poll([job]).get(job.job_id)

    def read_log(self, job: TrackedJob, credentials: SiteCredentials | None = None) -> str:
        # The job owns its folder: a symlinked log must not expose platform files.
        return read_job_text(job.workdir / ".mantik" / "job.log", job.workdir)

    def offline_files(
        self, job: TrackedJob, credentials: SiteCredentials | None = None, *, final: bool = False
    ) -> Path | None:
        """The job's ``.mantik`` folder as the platform reads it for offline tracking (here: a
        filesystem shared with the nodes); None where it cannot be read (now)."""
        return job.workdir / ".mantik"

    @staticmethod
    def exit_code(workdir: Path) -> int | None:
        """The exit code the wrapper recorded, if it got that far."""
        try:
            return int((workdir / ".mantik" / "exit-code").read_text().strip())
        except (FileNotFoundError, ValueError):
            return None

    @classmethod
    def finished(cls, workdir: Path) -> Observation:
        """The outcome of a job the scheduler no longer lists."""
        code = cls.exit_code(workdir)
        if code is None:
            return Observation(JobState.LOST, "the job ended without recording an exit code")
        if code == 0:
            return Observation(JobState.COMPLETED, exit_code=0)
        if code == 143:
            return Observation(JobState.CANCELLED, "terminated", exit_code=code)
        return Observation(JobState.FAILED, f"exit code {code}", exit_code=code)
