"""The ``slurm`` site: sbatch / squeue / scancel on a SLURM the platform can call.

Commands run locally today; SSH to a login node would wrap :meth:`SlurmDriver._run`.
"""

from __future__ import annotations

import re
import shlex
import subprocess
from collections.abc import Sequence

from mantik.compute.config import slurm_memory, slurm_time
from mantik.compute.states import JobState, Observation
from mantik.server.compute.drivers.base import (
    Driver,
    DriverError,
    SiteCredentials,
    TrackedJob,
    job_environment,
)
from mantik.server.compute.sites import SiteConfig
from mantik.server.compute.spec import JobSpec

# Values that reach sbatch must be plain tokens: no whitespace, quotes or newlines.
_SAFE_VALUE = re.compile(r"[A-Za-z0-9_.,:@%&|!()\[\]*+=/-]+")

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


def _checked(key: str, value: str) -> str:
    if not _SAFE_VALUE.fullmatch(value):
        raise DriverError(
            f"Resources.{key}={value!r} contains characters SLURM does not accept "
            "(spaces, quotes or line breaks).",
            user_error=True,
        )
    return value


def sbatch_arguments(spec: JobSpec, site: SiteConfig) -> list[str]:
    """The sbatch options for ``spec`` (UNICORE's mapping: CPUs → --ntasks)."""
    r = spec.config.resources
    args = [
        f"--job-name={spec.name}",
        f"--output={spec.mantik_dir}/slurm-%j.out",
        f"--chdir={spec.workdir}",
        "--parsable",
    ]
    queue = r.queue or site.partition
    if queue:
        args.append(f"--partition={_checked('Queue', queue)}")
    if r.runtime is not None:
        args.append(f"--time={slurm_time(r.runtime)}")
    if r.nodes is not None:
        args.append(f"--nodes={r.nodes}")
    if r.cpus is not None:
        args.append(f"--ntasks={r.cpus}")
    if r.cpus_per_node is not None:
        args.append(f"--ntasks-per-node={r.cpus_per_node}")
    if r.gpus_per_node is not None:
        args.append(f"--gpus-per-node={r.gpus_per_node}")
    if r.memory is not None:
        args.append(f"--mem={slurm_memory(r.memory)}")
    if r.reservation:
        args.append(f"--reservation={_checked('Reservation', r.reservation)}")
    if r.node_constraints:
        args.append(f"--constraint={_checked('NodeConstraints', r.node_constraints)}")
    if r.qos:
        args.append(f"--qos={_checked('QoS', r.qos)}")
    if spec.project:
        args.append(f"--account={_checked('project', spec.project)}")
    return [*args, *site.sbatch_args]


class SlurmDriver(Driver):
    def _run(self, argv: list[str], *, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        try:
            # sbatch exports its environment to the job: give it a clean one.
            return subprocess.run(
                argv, capture_output=True, text=True, timeout=timeout, env=job_environment()
            )
        except FileNotFoundError as exc:
            raise DriverError(f"Site {self.site.name!r}: {argv[0]} is not installed here") from exc
        except subprocess.TimeoutExpired as exc:
            raise DriverError(f"Site {self.site.name!r}: {argv[0]} did not answer") from exc

    def header(self, spec: JobSpec) -> list[str]:
        args = " ".join(shlex.quote(a) for a in sbatch_arguments(spec, self.site))
        return [f"# submitted with: sbatch {args}"]

    def submit(self, spec: JobSpec, credentials: SiteCredentials | None = None) -> str:
        result = self._run(["sbatch", *sbatch_arguments(spec, self.site), str(spec.script_path)])
        if result.returncode != 0:
            message = result.stderr.strip().removeprefix("sbatch: error: ")
            raise DriverError(f"SLURM refused the job: {message}", user_error=True)
        job_id = result.stdout.strip().split(";")[0]
        if not job_id.isdigit():
            raise DriverError(f"Could not make sense of sbatch output {result.stdout!r}")
        return job_id

    def poll(self, jobs: Sequence[TrackedJob]) -> dict[str, Observation]:
        if not jobs:
            return {}
        # One query for every job of this site (squeue keeps ended jobs for MinJobAge).
        result = self._run(["squeue", "--states=all", "--noheader", "--format=%i|%T|%r"])
        if result.returncode != 0:
            raise DriverError(f"squeue failed: {result.stderr.strip()}")
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
            slurm_state, reason = listed[job.job_id]
            state = _STATES.get(slurm_state.split()[0], JobState.RUNNING)
            code = self.exit_code(job.workdir) if state.terminal else None
            if state is JobState.COMPLETED and code not in (None, 0):
                state = JobState.FAILED
            why = slurm_state if state.terminal and state is not JobState.COMPLETED else None
            if reason and reason != "None":
                why = f"{why}: {reason}" if why else reason
            observed[job.job_id] = Observation(state, why, code)
        return observed

    def cancel(self, job: TrackedJob, credentials: SiteCredentials | None = None) -> None:
        result = self._run(["scancel", job.job_id])
        if result.returncode != 0 and "already completing or completed" not in result.stderr:
            raise DriverError(f"scancel failed: {result.stderr.strip()}")
