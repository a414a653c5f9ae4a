"""The local driver: a job is a detached process; its pid is the job id."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Sequence
from pathlib import Path

from mantik.compute.states import JobState, Observation
from mantik.server.compute.accounts.identity import command_as, switch_refused
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


def _group_leader(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[2] == str(pid)


class LocalDriver(Driver):
    def submit(self, spec: JobSpec, credentials: SiteCredentials | None = None) -> str:
        identity = spec.identity
        result = subprocess.run(
            command_as(identity, start_command(spec)) if identity else start_command(spec),
            capture_output=True,
            text=True,
            timeout=30,
            cwd=spec.workdir,
            env=job_environment(identity),
        )
        if result.returncode != 0 or not result.stdout.strip().isdigit():
            refused = identity and switch_refused(result.stderr, identity)
            raise refused or SiteFailed(f"Could not start the job locally: {result.stderr.strip()}")
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

    def find(self, name: str, workdir: Path) -> str | None:
        # The wrapper leads its process group; its pid is the job id.
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            script = _running_script(int(entry.name))
            found = script is not None and script.parent.parent == workdir
            if found and _group_leader(int(entry.name)):
                return entry.name
        return None

    def cancel(self, job: TrackedJob, credentials: SiteCredentials | None = None) -> None:
        pid = int(job.job_id)
        script = _running_script(pid)
        if script is None or script.parent.parent != job.workdir:
            return
        # The job's process group (the wrapper leads it): the wrapper records KILLED and
        # kills what ignores the signal; as the job's account, which can reach nothing else.
        identity = job.identity
        if identity is None or identity.is_platform:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGTERM)
            return
        result = subprocess.run(
            command_as(identity, ["kill", "-TERM", "--", f"-{pid}"]),
            capture_output=True,
            text=True,
            timeout=30,
            env=identity.environment(),
        )
        if result.returncode != 0 and _running_script(pid) is not None:
            refused = switch_refused(result.stderr, identity)
            raise refused or SiteFailed(f"Could not stop the job: {result.stderr.strip()}")
