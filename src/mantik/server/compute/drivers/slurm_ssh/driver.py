"""SLURM through SSH to a login node, as the user's own login: sbatch, squeue and scancel
over one connection per request, the job folder copied there over SFTP.

The platform keeps no SSH credentials: like UNICORE sites, jobs report themselves, and a
status request that brings the user's login observes the job (LOST after the token's life)
and mirrors an offline job's snapshot over SFTP, as UNICORE's file API does.
"""

from __future__ import annotations

import contextlib
import dataclasses
import re
from collections.abc import Sequence
from pathlib import Path

from mantik.compute.states import JobState, Observation
from mantik.server.compute.drivers.base import Driver
from mantik.server.compute.drivers.slurm.driver import slurm_state
from mantik.server.compute.drivers.slurm.render import sbatch_arguments
from mantik.server.compute.drivers.slurm_ssh.connection import SshSession
from mantik.server.compute.drivers.slurm_ssh.sftp_folder import SftpFolder
from mantik.server.compute.errors import SiteFailed, SiteRefused
from mantik.server.compute.job_folder import EXIT_CODE, MANTIK, SCRIPT, STAGED_IMAGE
from mantik.server.compute.job_log import KEPT, JobLog, Window
from mantik.server.compute.job_log import read as read_job_log
from mantik.server.compute.jobs import SiteCredentials, SshLogin, TrackedJob
from mantik.server.compute.offline.mirror import MirrorError, OfflineMirror
from mantik.server.compute.spec import JobSpec

DEFAULT_ROOT = "mantik-jobs"  # in the user's home on the login node


class SshSlurmDriver(Driver):
    observes_many_at_once = True  # one connection, one squeue

    def _session(self, credentials: SiteCredentials | None) -> SshSession:
        login: SshLogin | None = credentials.ssh if credentials else None
        if login is None or not (login.private_key or login.password):
            raise SiteRefused(
                f"Site {self.site.name!r} needs your SSH login for this: MANTIK_SSH_USER "
                "with MANTIK_SSH_KEY_FILE (or MANTIK_SSH_PASSWORD)."
            )
        assert self.site.ssh is not None
        return SshSession(self.site.name, self.site.ssh, login)

    def _folder(self, ssh: SshSession, run_id: str) -> str:
        return f"{ssh.home_path(str(self.site.work_root or DEFAULT_ROOT))}/{run_id}"

    def submit(self, spec: JobSpec, credentials: SiteCredentials | None = None) -> str:
        with self._session(credentials) as ssh:
            folder = self._folder(ssh, spec.run_id)
            ssh.upload_tree(spec.workdir, folder)
            if spec.image_file is not None:
                ssh.sftp.put(str(spec.image_file), f"{folder}/{STAGED_IMAGE}")
            there = dataclasses.replace(spec, workdir=Path(folder))
            script = f"{folder}/{MANTIK}/{SCRIPT}"
            result = ssh.run(["sbatch", *sbatch_arguments(there, self.site), script])
            if result.code == 127:
                raise SiteFailed(
                    f"Site {self.site.name!r}: sbatch is not on the login node's PATH (in a "
                    "login shell). The site's admin makes SLURM's commands available there."
                )
            if result.code != 0:
                message = result.err.strip().removeprefix("sbatch: error: ")
                if "partition" in message.lower():
                    known = ssh.run(["sinfo", "-h", "-o", "%R"]).out.split()
                    message += f" (the partitions there: {', '.join(sorted(set(known)))})"
                raise SiteRefused(f"SLURM refused the job: {message}")
            job_id = result.out.strip().split(";")[0]
            if not job_id.isdigit():
                raise SiteFailed(f"Could not make sense of sbatch output {result.out!r}")
            return job_id

    def poll(self, jobs: Sequence[TrackedJob]) -> dict[str, Observation]:
        return {}  # no credentials between requests: the jobs report themselves

    def observe(self, job: TrackedJob, credentials: SiteCredentials | None) -> Observation | None:
        return self.observe_many([job], credentials).get(job.job_id)

    def observe_many(
        self, jobs: Sequence[TrackedJob], credentials: SiteCredentials | None
    ) -> dict[str, Observation]:
        """All of them over one connection: one squeue, and the exit codes of the ended."""
        if not jobs or credentials is None or credentials.ssh is None:
            return {}
        with self._session(credentials) as ssh:
            ids = ",".join(job.job_id for job in jobs)
            listed = ssh.run(["squeue", "-h", "--states=all", f"--jobs={ids}", "--format=%i|%T|%r"])
            states = {}
            for line in listed.out.splitlines():
                parts = line.strip().split("|", 2)
                if len(parts) == 3:
                    states[parts[0]] = (parts[1], parts[2])
            seen = {}
            for job in jobs:
                found = states.get(job.job_id)
                if found is not None and not slurm_state(found[0]).terminal:
                    reason = found[1] if found[1] not in ("", "None") else None
                    seen[job.job_id] = Observation(slurm_state(found[0]), reason)
                    continue
                folder = self._folder(ssh, job.workdir.name)
                ended = _ended(ssh.read_text(f"{folder}/{MANTIK}/{EXIT_CODE}"))
                if found is not None and ended.state is JobState.LOST:
                    state = slurm_state(found[0])  # ended before its wrapper ran
                    ended = Observation(state, None if state is JobState.COMPLETED else found[0])
                seen[job.job_id] = ended
        return seen

    def cancel(self, job: TrackedJob, credentials: SiteCredentials | None = None) -> None:
        with self._session(credentials) as ssh:
            result = ssh.run(["scancel", job.job_id])
        if result.code != 0 and "already completing or completed" not in result.err:
            raise SiteFailed(f"scancel failed: {result.err.strip()}")

    def read_log(
        self, job: TrackedJob, credentials: SiteCredentials | None = None, window: Window = KEPT
    ) -> JobLog:
        if credentials is None or credentials.ssh is None:
            return super().read_log(job, window=window)  # what the platform kept (at the end)
        # Only the bytes asked for travel; the session lasts until the answer is read.
        stack = contextlib.ExitStack()
        try:
            ssh = stack.enter_context(self._session(credentials))
            remote = SftpFolder(ssh.sftp, self._folder(ssh, job.workdir.name))
            return read_job_log(remote, window, on_close=stack.close)
        except BaseException:
            stack.close()
            raise

    def offline_files(
        self, job: TrackedJob, credentials: SiteCredentials | None = None, *, final: bool = False
    ) -> Path | None:
        # As on UNICORE: mirrored (changed blocks only) while a request holds the login.
        if credentials is None or credentials.ssh is None:
            return None
        with self._session(credentials) as ssh:
            remote = SftpFolder(ssh.sftp, self._folder(ssh, job.workdir.name))
            try:
                return OfflineMirror(remote, job.workdir / MANTIK).run(final=final)
            except MirrorError as exc:
                raise SiteFailed(f"Offline files of job {job.job_id}: {exc}") from exc


def _ended(exit_code: str | None) -> Observation:
    """The outcome from the text of a remote exit-code file (None: not there)."""
    recorded = exit_code is not None and re.fullmatch(r"\s*-?\d+\s*", exit_code)
    return Driver.outcome(int(exit_code) if recorded and exit_code else None)
