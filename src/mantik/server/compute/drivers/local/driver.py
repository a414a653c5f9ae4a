"""The local driver: a job is a detached process; its pid is the job id."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Sequence
from pathlib import Path

from mantik.compute.states import JobState, Observation
from mantik.server.compute.drivers.base import Driver, job_environment
from mantik.server.compute.drivers.local.render import start_command
from mantik.server.compute.errors import SiteFailed
from mantik.server.compute.job_folder import is_wrapper_script
from mantik.server.compute.jobs import SiteCredentials, TrackedJob
from mantik.server.compute.spec import JobSpec


def _running_script(pid: int) -> Path | None:
    """The wrapper script that process ``pid`` runs, if it is alive and one of ours."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    if stat.rsplit(")", 1)[1].split()[0] in ("Z", "X"):  # exited, not yet reaped
        return None
    scripts = [a for a in argv if is_wrapper_script(a)]
    return Path(scripts[0].decode()) if scripts else None


class LocalDriver(Driver):
    def submit(self, spec: JobSpec, credentials: SiteCredentials | None = None) -> str:
        result = subprocess.run(
            start_command(spec),
            capture_output=True,
            text=True,
            timeout=30,
            cwd=spec.workdir,
            env=job_environment(),
        )
        if result.returncode != 0 or not result.stdout.strip().isdigit():
            raise SiteFailed(f"Could not start the job locally: {result.stderr.strip()}")
        return result.stdout.strip()

    def poll(self, jobs: Sequence[TrackedJob]) -> dict[str, Observation]:
        observed = {}
        for job in jobs:
            script = _running_script(int(job.job_id))
            if script is not None and script.parent.parent == job.workdir:
                observed[job.job_id] = Observation(JobState.RUNNING)
            else:
                observed[job.job_id] = self.finished(job.workdir)
        return observed

    def cancel(self, job: TrackedJob, credentials: SiteCredentials | None = None) -> None:
        pid = int(job.job_id)
        script = _running_script(pid)
        if script is not None and script.parent.parent == job.workdir:
            os.kill(pid, signal.SIGTERM)  # the wrapper stops the program and records KILLED
