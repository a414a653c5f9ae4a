"""``/compute-backend/*``: submission (mantik 0.1.x form fields) and run control."""

from __future__ import annotations

import base64
import hashlib
import json
import tempfile
from pathlib import Path as FilePath
from typing import IO, Annotated, Any

from fastapi import (
    APIRouter,
    BackgroundTasks,
    File,
    Form,
    Header,
    Path,
    Query,
    Request,
    Response,
    UploadFile,
)
from fastapi.responses import StreamingResponse
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from mantik._bounded import nesting_message, shown, too_deep
from mantik.server.api.deps import CurrentUser
from mantik.server.api.error_docs import COMPUTE_ERRORS
from mantik.server.compute import submission_keys
from mantik.server.compute.errors import InvalidLogRequest, InvalidSubmission
from mantik.server.compute.job_log import Window
from mantik.server.compute.jobs import SiteCredentials, SshLogin
from mantik.server.compute.leftovers import UPLOAD_PREFIX, marked_name
from mantik.server.compute.offline.marks import SyncStatus, statuses
from mantik.server.compute.service import ComputeService, Submission
from mantik.server.models import ComputeJob

router = APIRouter(prefix="/compute-backend", tags=["compute"], responses=COMPUTE_ERRORS)

# MLflow's ids: experiments are numbers, runs 32 hex digits; anything longer is not one.
_ID = r"^[A-Za-z0-9_-]+$"
ExperimentId = Annotated[str, Path(max_length=64, pattern=_ID)]
RunId = Annotated[str, Path(max_length=64, pattern=_ID)]


class SubmitResponse(BaseModel):
    experiment_id: str
    run_id: str
    unicore_job_id: str
    job_id: str
    site: str


class RunView(BaseModel):
    run_id: str
    experiment_id: str
    site: str
    job_id: str | None
    state: str
    run_status: str
    reason: str | None
    exit_code: int | None
    entry_point: str
    submitted_at: str
    finished_at: str | None
    # How the job tracks (online | offline; None until it started), and for offline runs
    # how far behind the central run is: seconds since the newest synced point.
    tracking: str | None = None
    sync_lag_seconds: float | None = None
    synced_at: str | None = None

    @classmethod
    def of(cls, job: ComputeJob, sync: SyncStatus | None = None) -> RunView:
        from mantik.compute.states import JobState

        return cls(
            run_id=job.run_id,
            experiment_id=job.experiment_id,
            site=job.site,
            job_id=job.job_id,
            state=job.state,
            run_status=JobState(job.state).run_status,
            reason=job.reason,
            exit_code=job.exit_code,
            entry_point=job.entry_point,
            submitted_at=job.submitted_at.isoformat(),
            finished_at=job.finished_at.isoformat() if job.finished_at else None,
            tracking=sync.tracking if sync else None,
            sync_lag_seconds=sync.lag_seconds if sync else None,
            synced_at=sync.synced_at.isoformat() if sync and sync.synced_at else None,
        )


def _view(service: ComputeService, job: ComputeJob) -> RunView:
    return RunView.of(job, statuses(service.db, [job.run_id]).get(job.run_id))


def _credentials(
    user: str | None,
    password: str | None,
    ssh_user: str | None = None,
    ssh_password: str | None = None,
    ssh_private_key: str | None = None,
) -> SiteCredentials | None:
    """A request's UNICORE login and SSH login (either may be missing), for it only."""
    ssh = None
    if ssh_user and (ssh_password or ssh_private_key):
        ssh = SshLogin(ssh_user, ssh_password or None, ssh_private_key or None)
    if user and password:
        return SiteCredentials(user, password, ssh)
    return SiteCredentials("", "", ssh) if ssh else None


def _header_credentials(request: Request) -> SiteCredentials | None:
    """The logins a client may send with status, logs and cancel requests."""
    headers = request.headers
    key = headers.get("x-ssh-private-key")
    try:
        private_key = base64.b64decode(key, validate=True).decode() if key else None
    except ValueError as exc:
        raise InvalidSubmission("X-Ssh-Private-Key is not base64.") from exc
    return _credentials(
        headers.get("x-unicore-user"),
        headers.get("x-unicore-password"),
        headers.get("x-ssh-user"),
        headers.get("x-ssh-password"),
        private_key,
    )


def _service(request: Request) -> ComputeService:
    service: ComputeService = request.app.state.compute
    return service


def _unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [key for key, _ in pairs]
    if len(set(keys)) < len(keys):
        twice = next(key for key in keys if keys.count(key) > 1)
        raise InvalidSubmission(f"The key {shown(twice)} appears twice; give it once.")
    return dict(pairs)


def _json_object(raw: str, field: str) -> dict[str, Any]:
    try:
        value = json.loads(raw, object_pairs_hook=_unique)
    except ValueError as exc:
        raise InvalidSubmission(f"{field} is not valid JSON: {shown(str(exc))}") from exc
    except RecursionError:
        raise InvalidSubmission(nesting_message(field)) from None
    if too_deep(value):
        raise InvalidSubmission(nesting_message(field))
    if not isinstance(value, dict):
        raise InvalidSubmission(f"{field} must be a JSON object.")
    return value


def _parameters(raw: str | None) -> dict[str, Any]:
    return _json_object(raw, "mlflow_parameters") if raw else {}


def _inline_config(raw: str | None) -> dict[str, Any] | None:
    # 0.1.x clients send a path in unicore_backend_config; an object is an inline config.
    if raw is None or not raw.lstrip().startswith("{"):
        return None
    return _json_object(raw, "backend_config")


def _copy_hashing(source: IO[bytes], target: IO[bytes]) -> str:
    """Copy the upload to ``target``; its sha256."""
    digest = hashlib.sha256()
    while chunk := source.read(1024 * 1024):
        digest.update(chunk)
        target.write(chunk)
    target.flush()
    return digest.hexdigest()


@router.post("/submit/{experiment_id}", status_code=201, response_model=SubmitResponse)
async def submit(
    request: Request,
    response: Response,
    user: CurrentUser,
    experiment_id: ExperimentId,
    mlproject_zip: Annotated[UploadFile, File(description="The MLproject folder as a zip.")],
    entry_point: Annotated[str, Form(max_length=256)] = "main",
    mlflow_parameters: Annotated[str | None, Form(max_length=1_000_000)] = None,
    unicore_backend_config_path: Annotated[str | None, Form(max_length=4096)] = None,
    unicore_backend_config: Annotated[str | None, Form(max_length=1_000_000)] = None,
    backend_config: Annotated[str | None, Form(max_length=1_000_000)] = None,
    unicore_project: Annotated[str | None, Form(max_length=256)] = None,
    run_name: Annotated[str | None, Form(max_length=250)] = None,
    # sha256 of an image already in the site's cache (PUT /compute-backend/images/{sha256}).
    image_digest: Annotated[str | None, Form(max_length=128)] = None,
    # MLflow's pass-through of parameters the entry point does not declare (else a 400).
    allow_undeclared_params: Annotated[bool, Form()] = False,
    # Accepted for mantik 0.1.x clients; credentials are used per request, never stored.
    unicore_user: Annotated[str | None, Form(max_length=256)] = None,
    unicore_password: Annotated[str | None, Form(max_length=1024)] = None,
    # An SSH site's login (MANTIK_SSH_USER, the key file's text or MANTIK_SSH_PASSWORD).
    ssh_user: Annotated[str | None, Form(max_length=256)] = None,
    ssh_password: Annotated[str | None, Form(max_length=1024)] = None,
    ssh_private_key: Annotated[str | None, Form(max_length=16384)] = None,
    mlflow_tracking_uri: Annotated[str | None, Form(max_length=4096)] = None,
    mlflow_tracking_token: Annotated[str | None, Form(max_length=16384)] = None,
    idempotency_key: Annotated[
        str | None,
        Header(
            alias=submission_keys.HEADER,
            description="Names this submission: a retry with the same key and request "
            "answers with the run the first made (header Idempotent-Replayed: true) instead "
            "of making another; kept 24 h per user.",
        ),
    ] = None,
) -> SubmitResponse:
    service = _service(request)
    key = submission_keys.checked_key(idempotency_key)
    # backend_config is always inline; unicore_backend_config may be either (0.1.x).
    inline = (
        _json_object(backend_config, "backend_config")
        if backend_config is not None
        else _inline_config(unicore_backend_config)
    )
    config_path = unicore_backend_config_path
    if config_path is None and inline is None:
        config_path = unicore_backend_config
    with tempfile.NamedTemporaryFile(
        dir=service.settings.data_dir, prefix=marked_name(UPLOAD_PREFIX), suffix=".zip"
    ) as archive:
        digest = await run_in_threadpool(_copy_hashing, mlproject_zip.file, archive)
        submission = Submission(
            experiment_id=experiment_id,
            entry_point=entry_point,
            parameters=_parameters(mlflow_parameters),
            archive=FilePath(archive.name),
            backend_config_path=config_path,
            backend_config=inline,
            run_name=run_name,
            project=unicore_project,
            credentials=_credentials(
                unicore_user, unicore_password, ssh_user, ssh_password, ssh_private_key
            ),
            image_digest=image_digest or None,
            archive_sha256=digest,
            allow_undeclared_params=allow_undeclared_params,
        )
        done, replayed = await run_in_threadpool(service.submit, user.username, submission, key)
    if replayed:
        response.headers["Idempotent-Replayed"] = "true"
    return SubmitResponse(
        experiment_id=done.experiment_id,
        run_id=done.run_id,
        unicore_job_id=done.job_id,
        job_id=done.job_id,
        site=done.site,
    )


@router.get("/runs", response_model=list[RunView])
def list_runs(
    request: Request,
    user: CurrentUser,
    experiment_id: Annotated[str | None, Query(max_length=64, pattern=_ID)] = None,
    state: Annotated[str | None, Query(max_length=64, pattern=_ID)] = None,
) -> list[RunView]:
    service = _service(request)
    jobs = service.list_jobs(user.username, experiment_id, state, _header_credentials(request))
    syncs = statuses(service.db, (job.run_id for job in jobs))
    return [RunView.of(job, syncs.get(job.run_id)) for job in jobs]


@router.get("/runs/{run_id}", response_model=RunView)
def get_run(
    request: Request, user: CurrentUser, run_id: RunId, background: BackgroundTasks
) -> RunView:
    service = _service(request)
    credentials = _header_credentials(request)
    job = service.status(user.username, run_id, credentials)
    if credentials is not None:  # offline runs on UNICORE sync while someone follows them
        background.add_task(service.refresh_offline, job.run_id, credentials)
    return _view(service, job)


_LOG_HEADERS = {
    "X-Mantik-Log-Size": "Bytes the job printed so far (kept or not).",
    "X-Mantik-Log-Dropped": "Of them, bytes the log no longer keeps (between its head and tail).",
    "X-Mantik-Log-Start": "The offset of the first byte served.",
    "X-Mantik-Log-End": "The offset after the last byte served: the offset to ask for next.",
}


@router.get(
    "/runs/{run_id}/logs",
    response_class=StreamingResponse,
    responses={
        200: {
            "description": "The job's log as text. It keeps the beginning and the end of "
            "the job's output (the platform's MANTIK_JOB_LOG_MAX_BYTES, 64 MiB by default); "
            "what was left out between reads as one line `[mantik: N bytes of output left "
            "out here]`. By default all that is kept; `tail_bytes` for the end only; "
            "`offset` (and `length`) to read on from a byte offset of the whole output.",
            "content": {"text/plain": {}},
            "headers": {name: {"description": text} for name, text in _LOG_HEADERS.items()},
        }
    },
)
def get_logs(
    request: Request,
    user: CurrentUser,
    run_id: RunId,
    tail_bytes: Annotated[
        int | None, Query(ge=0, description="Only the last this many bytes.")
    ] = None,
    offset: Annotated[
        int | None,
        Query(ge=0, description="Start at this byte of the whole output (X-Mantik-Log-End)."),
    ] = None,
    length: Annotated[int | None, Query(ge=0, description="At most this many bytes.")] = None,
) -> StreamingResponse:
    if tail_bytes is not None and (offset is not None or length is not None):
        raise InvalidLogRequest("Ask for the log with tail_bytes, or with offset and length.")
    window = Window(tail_bytes, offset, length)
    log = _service(request).logs(user.username, run_id, _header_credentials(request), window)
    headers = {
        "X-Mantik-Log-Size": str(log.size),
        "X-Mantik-Log-Dropped": str(log.dropped),
        "X-Mantik-Log-Start": str(log.start),
        "X-Mantik-Log-End": str(log.end),
    }
    return StreamingResponse(log.chunks, media_type="text/plain; charset=utf-8", headers=headers)


@router.post("/runs/{run_id}/cancel", response_model=RunView)
def cancel_run(request: Request, user: CurrentUser, run_id: RunId) -> RunView:
    service = _service(request)
    return _view(service, service.cancel(user.username, run_id, _header_credentials(request)))
