"""The UNICORE driver: UNICORE/X REST through pyunicore (the official client).

The user's UNICORE credentials arrive with each request and live only as long as it does.
Without them the platform cannot ask UNICORE about a job, so the job wrapper reports its
own RUNNING and final states with the job token; when the user asks for status, logs or a
cancel, the client sends the credentials again and the platform asks UNICORE directly (and,
for offline tracking, fetches the job's snapshot through the file API); a job that never
reports is marked LOST once its token (Runtime + queue allowance) has expired.
"""

from __future__ import annotations

import ssl
import uuid
from collections.abc import Sequence
from pathlib import Path

import httpx
from pyunicore import client as unicore
from pyunicore.credentials import UsernamePassword

from mantik.compute.archive.pack import write_project_zip
from mantik.compute.states import JobState, Observation
from mantik.server.compute.drivers.base import Driver
from mantik.server.compute.drivers.unicore.render import (
    ARCHIVE,
    PROLOGUE,
    SCRIPT,
    STDOUT,
    job_description,
)
from mantik.server.compute.errors import (
    CredentialsRefused,
    SiteError,
    SiteFailed,
    SiteRefused,
    SiteUnavailable,
)
from mantik.server.compute.job_folder import MANTIK, STAGED_IMAGE, TOKEN
from mantik.server.compute.job_log import KEPT, JobLog, Window
from mantik.server.compute.job_log import read as read_job_log
from mantik.server.compute.jobs import SiteCredentials, TrackedJob
from mantik.server.compute.offline.mirror import MirrorError, OfflineMirror
from mantik.server.compute.offline.unicore_mirror import UnicoreFolder
from mantik.server.compute.spec import JobSpec

IMAGE_FOLDER = "mantik-images"  # on the site's image_storage
_STATES = {
    "READY": JobState.PENDING,
    "STAGINGIN": JobState.PENDING,
    "QUEUED": JobState.PENDING,
    "RUNNING": JobState.RUNNING,
    "STAGINGOUT": JobState.RUNNING,
    "SUCCESSFUL": JobState.COMPLETED,
    "FAILED": JobState.FAILED,
}


def _translate(exc: Exception, site: str) -> SiteError:
    """pyunicore raises bare httpx errors whose text starts with the status code."""
    text = str(exc)
    if text.startswith(("401", "403")):
        return CredentialsRefused(
            f"UNICORE at site {site!r} refused the credentials (check MANTIK_UNICORE_USERNAME "
            "and MANTIK_UNICORE_PASSWORD)."
        )
    if text.startswith("503"):
        return SiteUnavailable(f"UNICORE at site {site!r} does not accept jobs right now.")
    if isinstance(exc, httpx.TransportError):
        return SiteFailed(f"UNICORE at site {site!r} cannot be reached: {exc}")
    return SiteFailed(f"UNICORE at site {site!r} failed: {text[:500]}")


class UnicoreDriver(Driver):
    def _verify(self) -> bool | ssl.SSLContext:
        if not self.site.verify_tls:
            return False
        if self.site.ca_bundle is not None:
            return ssl.create_default_context(cafile=str(self.site.ca_bundle))
        return True  # pyunicore's own default is False: never inherit it

    def _client(self, credentials: SiteCredentials | None) -> unicore.Client:
        if credentials is None or not credentials.username:
            raise SiteRefused(
                f"Site {self.site.name!r} needs your UNICORE credentials for this "
                "(MANTIK_UNICORE_USERNAME, MANTIK_UNICORE_PASSWORD)."
            )
        credential = UsernamePassword(credentials.username, credentials.password)
        # No security sessions: a session expiring (432) mid-upload breaks pyunicore's
        # streamed PUT; Basic auth on every request is always valid.
        transport = unicore.Transport(
            credential, verify=self._verify(), use_security_sessions=False, timeout=120
        )
        try:
            return unicore.Client(transport, str(self.site.url))
        except Exception as exc:
            raise _translate(exc, self.site.name) from exc

    def _job(self, job: TrackedJob, credentials: SiteCredentials | None) -> unicore.Job:
        client = self._client(credentials)
        return unicore.Job(client.transport, f"{str(self.site.url).rstrip('/')}/jobs/{job.job_id}")

    def prologue(self, spec: JobSpec) -> list[str]:
        return list(PROLOGUE)

    def submit(self, spec: JobSpec, credentials: SiteCredentials | None = None) -> str:
        client = self._client(credentials)
        archive = spec.mantik_dir / ARCHIVE
        with archive.open("wb") as handle:
            write_project_zip(spec.project_dir, (), handle)
        inputs = {
            SCRIPT: str(spec.script_path),
            TOKEN: str(spec.folder.token),
            ARCHIVE: str(archive),
        }
        description = job_description(spec)
        try:
            if spec.image_file is not None and self.site.image_storage:
                stored = self._stored_image(client, spec.image_file)
                description["Imports"] = [{"From": f"link:{stored}", "To": STAGED_IMAGE}]
            elif spec.image_file is not None:  # streamed from the platform's cache, per job
                inputs[STAGED_IMAGE] = str(spec.image_file)
            job = client.new_job(description, inputs=inputs)
        except SiteError:
            raise
        except Exception as exc:
            raise _translate(exc, self.site.name) from exc
        finally:
            archive.unlink(missing_ok=True)
            # The token now lives on the site only.
            spec.folder.token.unlink(missing_ok=True)
        return str(job.resource_url).rstrip("/").rsplit("/", 1)[-1]

    def _stored_image(self, client: unicore.Client, image: Path) -> str:
        """The image's path on the site, in the user's image storage; uploaded (streamed,
        under a temporary name, then renamed) only when that storage lacks it."""
        base = str(self.site.url).rstrip("/")
        storage = unicore.Storage(client.transport, f"{base}/storages/{self.site.image_storage}")
        name = f"{IMAGE_FOLDER}/{image.name}"  # the cache's <sha256>.sif
        try:
            held = storage.stat(name).properties.get("size") == image.stat().st_size
        except Exception as exc:
            if not str(exc).startswith("404"):
                raise
            held = False
        if not held:
            partial = f"{IMAGE_FOLDER}/.{image.name}.{uuid.uuid4().hex}.part"
            storage.upload(str(image), destination=partial)
            storage.rename(partial, name)
        mount = str(storage.properties.get("mountPoint", "")).rstrip("/")
        if not mount:
            raise SiteFailed(
                f"UNICORE storage {self.site.image_storage!r} at site {self.site.name!r} does "
                "not say where it is mounted; the admin should unset image_storage.",
            )
        return f"{mount}/{name}"

    def poll(self, jobs: Sequence[TrackedJob]) -> dict[str, Observation]:
        return {}  # no stored credentials: the job reports itself

    def observe(self, job: TrackedJob, credentials: SiteCredentials | None) -> Observation | None:
        if credentials is None:
            return None
        try:
            properties = self._job(job, credentials).properties
        except SiteError:
            raise
        except Exception as exc:
            raise _translate(exc, self.site.name) from exc
        status = str(properties.get("status", ""))
        state = _STATES.get(status)
        if state is None:  # UNDEFINED or a state this version does not know: keep waiting
            return None
        code_text = properties.get("exitCode")
        code = int(code_text) if code_text not in (None, "") else None
        message = properties.get("statusMessage") or None
        if state is JobState.COMPLETED and code not in (None, 0):
            state = JobState.FAILED
        # An aborted job: the wrapper's TERM exit code, or UNICORE's own message (assumed
        # wording "Job was aborted", from the UNICORE docs; the test gateway does the same).
        if state is JobState.FAILED and (code == 143 or "abort" in str(message).lower()):
            state = JobState.CANCELLED
        return Observation(state, message if state.terminal else None, code)

    def cancel(self, job: TrackedJob, credentials: SiteCredentials | None = None) -> None:
        try:
            self._job(job, credentials).abort()
        except SiteError:
            raise
        except Exception as exc:
            raise _translate(exc, self.site.name) from exc

    def offline_files(
        self, job: TrackedJob, credentials: SiteCredentials | None = None, *, final: bool = False
    ) -> Path | None:
        # The job folder lies on the site: mirrored through its file API while a request
        # holds the user's credentials (see offline.unicore_mirror); without them, nothing to read.
        if credentials is None:
            return None
        try:
            storage = self._job(job, credentials).working_dir
            return OfflineMirror(UnicoreFolder(storage), job.workdir / MANTIK).run(final=final)
        except SiteError:
            raise
        except MirrorError as exc:
            raise SiteFailed(f"Offline files of job {job.job_id}: {exc}") from exc
        except Exception as exc:
            raise _translate(exc, self.site.name) from exc

    def read_log(
        self, job: TrackedJob, credentials: SiteCredentials | None = None, window: Window = KEPT
    ) -> JobLog:
        if credentials is None:
            return super().read_log(job, window=window)  # what the platform kept (uploaded)
        try:  # ranges of the files the log is in: only the bytes asked for travel
            remote = UnicoreFolder(self._job(job, credentials).working_dir)
            log = read_job_log(remote, window)
            if not log.found:  # the wrapper did not get to start: what UNICORE caught
                log = read_job_log(remote, window, log_folder="/", head_name=STDOUT)
        except SiteError:
            raise
        except Exception as exc:
            raise _translate(exc, self.site.name) from exc
        return log
