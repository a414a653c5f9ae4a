"""The SLURM driver: sbatch / squeue / scancel, run where the platform runs.

Commands run locally, sbatch and scancel as the job's account; SSH to a login node would
wrap :meth:`SlurmDriver._run`.
"""

from __future__ import annotations

import shlex
import subprocess
from collections.abc import Sequence
from pathlib import Path

from mantik.compute.states import JobState, Observation
from mantik.server.compute.accounts.identity import JobIdentity, command_as, switch_refused
from mantik.server.compute.drivers.base import Driver, job_environment
from mantik.server.compute.drivers.slurm.render import sbatch_arguments
from mantik.server.compute.errors import SiteFailed, SiteRefused
from mantik.server.compute.jobs import SiteCredentials, TrackedJob
from mantik.server.compute.spec import JobSpec

_STATES = {
    "PENDING": JobState.PENDING,
    "CONFIGURING": JobState.PENDING,
    "REQUEUED": JobState.PENDING,
    "REQUEUE_HOLD": JobState.PENDING,
    "REQUEUE_FED": JobState.PENDING,
    "RESV_DEL_HOLD": JobState.PENDING,
    "SUSPENDED": JobState.PENDING,
    "STOPPED": JobState.PENDING,
    "RESIZING": JobState.RUNNING,
    "RUNNING": JobState.RUNNING,
    "COMPLETING": JobState.RUNNING,
    "STAGE_OUT": JobState.RUNNING,
    "SIGNALING": JobState.RUNNING,
    "COMPLETED": JobState.COMPLETED,
    "FAILED": JobState.FAILED,
    "SPECIAL_EXIT": JobState.FAILED,
    "REVOKED": JobState.CANCELLED,
    "CANCELLED": JobState.CANCELLED,
    "TIMEOUT": JobState.TIMEOUT,
    "DEADLINE": JobState.TIMEOUT,
    "OUT_OF_MEMORY": JobState.OUT_OF_MEMORY,
    "NODE_FAIL": JobState.NODE_FAIL,
    "BOOT_FAIL": JobState.NODE_FAIL,
    "PREEMPTED": JobState.PREEMPTED,
}


def slurm_state(name: str) -> JobState:
    """Ours for a SLURM state name as squeue prints it (unknown ones: still running)."""
    return _STATES.get(name.split()[0], JobState.RUNNING)


class SlurmDriver(Driver):
    def _run(
        self, argv: list[str], identity: JobIdentity | None = None, *, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        """``argv`` as ``identity`` (sbatch, scancel) or as the platform (squeue)."""
        try:
            # sbatch exports its environment to the job: give it a clean one.
            result = subprocess.run(
                command_as(identity, argv) if identity else argv,
                capture_output=True,
                text=True,
                timeout=timeout,
                env=job_environment(identity),
            )
        except FileNotFoundError as exc:
            raise SiteFailed(f"Site {self.site.name!r}: {argv[0]} is not installed here") from exc
        except subprocess.TimeoutExpired as exc:
            raise SiteFailed(f"Site {self.site.name!r}: {argv[0]} did not answer") from exc
        refused = identity and result.returncode != 0 and switch_refused(result.stderr, identity)
        if refused:
            raise refused
        return result

    def header(self, spec: JobSpec) -> list[str]:
        args = " ".join(shlex.quote(a) for a in sbatch_arguments(spec, self.site))
        return [f"# submitted with: sbatch {args}"]

    def submit(self, spec: JobSpec, credentials: SiteCredentials | None = None) -> str:
        argv = ["sbatch", *sbatch_arguments(spec, self.site), str(spec.script_path)]
        result = self._run(argv, spec.identity)
        if result.returncode != 0:
            message = result.stderr.strip().removeprefix("sbatch: error: ")
            raise SiteRefused(f"SLURM refused the job: {message}")
        job_id = result.stdout.strip().split(";")[0]
        if not job_id.isdigit():
            raise SiteFailed(f"Could not make sense of sbatch output {result.stdout!r}")
        return job_id

    def poll(self, jobs: Sequence[TrackedJob]) -> dict[str, Observation]:
        if not jobs:
            return {}
        # One query for every job of this site (squeue keeps ended jobs for MinJobAge).
        result = self._run(["squeue", "--states=all", "--noheader", "--format=%i|%T|%r"])
        if result.returncode != 0:
            raise SiteFailed(f"squeue failed: {result.stderr.strip()}")
        listed: dict[str, tuple[str, str]] = {}
        for line in result.stdout.splitlines():
            parts = line.strip().split("|", 2)
            if len(parts) == 3:
                listed[parts[0]] = (parts[1], parts[2])
        observed = {}
        for job in jobs:
            if job.job_id not in listed:
                observed[job.job_id] = self.finished(job.workdir)
                continue
            slurm_name, reason = listed[job.job_id]
            state = slurm_state(slurm_name)
            code = self.exit_code(job.workdir) if state.terminal else None
            if state is JobState.COMPLETED and code not in (None, 0):
                state = JobState.FAILED
            why = slurm_name if state.terminal and state is not JobState.COMPLETED else None
            if reason and reason != "None":
                why = f"{why}: {reason}" if why else reason
            observed[job.job_id] = Observation(state, why, code)
        return observed

    def find(self, name: str, workdir: Path) -> str | None:
        result = self._run(
            ["squeue", "--states=all", "--noheader", f"--name={name}", "--format=%i|%Z"]
        )
        if result.returncode != 0:
            raise SiteFailed(f"squeue failed: {result.stderr.strip()}")
        for line in result.stdout.splitlines():
            job_id, _, folder = line.strip().partition("|")
            if folder and Path(folder) == workdir:
                return job_id
        return None

    def cancel(self, job: TrackedJob, credentials: SiteCredentials | None = None) -> None:
        result = self._run(["scancel", job.job_id], job.identity)
        if result.returncode != 0 and "already completing or completed" not in result.stderr:
            raise SiteFailed(f"scancel failed: {result.stderr.strip()}")
