"""``mantik.ComputeBackendClient``: submit MLflow projects to HPC sites through the platform."""

from __future__ import annotations

import dataclasses
import json
import os
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from mantik._exceptions import (
    ConfigurationError,
    MissingEnvironmentError,
    PlatformError,
    PlatformUnreachable,
)
from mantik.client import _env, _http, _images, _ssh, _tokens, _watch
from mantik.client._progress import ProgressReader, Report, UploadProgress, reporter
from mantik.client._runs import RunInfo, SubmittedRun
from mantik.compute.archive.pack import zip_project_to_tempfile
from mantik.compute.config.loading import load_backend_config
from mantik.compute.config.model import BackendConfig
from mantik.compute.project.loading import load_project

_UNICORE_USER = ("MANTIK_UNICORE_USERNAME", "MANTIK_UNICORE_USER")
_IMAGE_LIMIT_HEADER = "X-Mantik-Max-Image-Bytes"


@dataclass(frozen=True)
class _Image:
    """A local image to run: its file, sha256, and whether the platform still needs it."""

    path: Path
    digest: str
    size: int
    missing: bool


_IDEMPOTENCY_HEADER = "Idempotency-Key"
_RETRY_PAUSES = (0.5, 1.0, 2.0, 4.0)  # after a lost answer or a gateway's error
_IN_PROGRESS_WAIT = 120.0  # seconds to wait for the first attempt to end (409s)


def _platform_answered(response: httpx.Response) -> bool:
    """The platform's own error (JSON with ``detail``), not a proxy's or balancer's page."""
    try:
        body = response.json()
    except ValueError:
        return False
    return isinstance(body, dict) and "detail" in body


class _SubmitAttempt:
    """One submission's Idempotency-Key and retry budget: the same key on every attempt,
    so the platform makes one run however many of its answers are lost."""

    def __init__(self, key: str, report: Report) -> None:
        self.key = key
        self.report = report
        self._retries = 0
        self._deadline = time.monotonic() + _IN_PROGRESS_WAIT

    def again(self, response: httpx.Response | None) -> bool:
        """Whether to send again after ``response`` (None: no answer arrived); sleeps."""
        if response is not None and response.status_code == 409:
            if time.monotonic() >= self._deadline:
                return False
            time.sleep(1.0)  # the first attempt is still submitting
        elif response is None or (
            response.status_code in (502, 503, 504) and not _platform_answered(response)
        ):
            if self._retries >= len(_RETRY_PAUSES):
                return False
            time.sleep(_RETRY_PAUSES[self._retries])
            self._retries += 1
        else:
            return False
        self.report = _uncounted  # the bytes were counted once already
        return True


def _uncounted(_sent: int) -> None:
    pass


class ComputeBackendClient:
    """Client of the platform's compute backend.

    Example::

        client = mantik.ComputeBackendClient.from_env()
        run = client.submit_run(
            experiment_id=1,
            mlflow_parameters={"alpha": 0.5},
            mlproject_path="./my-project",
            backend_config_path="compute-backend-config.json",
        )
        client.wait(run.run_id)
    """

    def __init__(
        self,
        compute_backend_url: str | None = None,
        unicore_username: str | None = None,
        unicore_password: str | None = None,
        unicore_project: str | None = None,
        mlflow_tracking_uri: str | None = None,
        *,
        username: str | None = None,
        password: str | None = None,
        verify: bool | str = True,
        ssh_username: str | None = None,
        ssh_key_file: str | None = None,
        ssh_password: str | None = None,
    ) -> None:
        tracking = mlflow_tracking_uri or os.environ.get(_env.TRACKING_URI)
        if compute_backend_url is None and not tracking:
            raise MissingEnvironmentError([_env.TRACKING_URI])
        self.platform_url = _env.platform_url(
            tracking or compute_backend_url or "", source="mlflow_tracking_uri"
        )
        self.compute_backend_url = (
            compute_backend_url.rstrip("/")
            if compute_backend_url
            else f"{self.platform_url}/compute-backend"
        )
        self.username = username or os.environ.get(_env.USERNAME) or ""
        self._password = password or os.environ.get(_env.PASSWORD) or ""
        missing = [
            n for n, v in ((_env.USERNAME, self.username), (_env.PASSWORD, self._password)) if not v
        ]
        if missing:
            raise MissingEnvironmentError(missing)
        self.unicore_username = unicore_username
        self._unicore_password = unicore_password
        self.unicore_project = unicore_project
        # An SSH site's login, sent with each request over TLS and used for it only.
        self.ssh_username = ssh_username
        self._ssh_key_file = ssh_key_file
        self._ssh_password = ssh_password
        self._http = httpx.Client(timeout=httpx.Timeout(600.0, connect=10.0), verify=verify)

    @classmethod
    def from_env(cls) -> ComputeBackendClient:
        """Build a client from the guide's environment variables.

        ``MLFLOW_TRACKING_URI``, ``MANTIK_USERNAME`` and ``MANTIK_PASSWORD`` are required;
        the UNICORE ones (``MANTIK_UNICORE_USERNAME`` or ``MANTIK_UNICORE_USER``,
        ``MANTIK_UNICORE_PASSWORD``, ``MANTIK_UNICORE_PROJECT``) when the site is UNICORE;
        ``MANTIK_SSH_USER`` with ``MANTIK_SSH_KEY_FILE`` or ``MANTIK_SSH_PASSWORD`` when it
        is reached over SSH.
        """
        _env.require(_env.USERNAME, _env.PASSWORD, _env.TRACKING_URI)
        return cls(
            unicore_username=next(
                (os.environ[n] for n in _UNICORE_USER if os.environ.get(n)), None
            ),
            unicore_password=os.environ.get("MANTIK_UNICORE_PASSWORD") or None,
            unicore_project=os.environ.get("MANTIK_UNICORE_PROJECT") or None,
            ssh_username=os.environ.get("MANTIK_SSH_USER") or None,
            ssh_key_file=os.environ.get("MANTIK_SSH_KEY_FILE") or None,
            ssh_password=os.environ.get("MANTIK_SSH_PASSWORD") or None,
        )

    def close(self) -> None:
        self._http.close()

    def __del__(self) -> None:  # the guide's usage never closes the client
        http = getattr(self, "_http", None)
        if http is not None:
            http.close()

    def __enter__(self) -> ComputeBackendClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- requests ------------------------------------------------------------------------

    def _bearer(self) -> dict[str, str]:
        tokens = _tokens.obtain(self.platform_url, self.username, self._password)
        return {"Authorization": f"Bearer {tokens.access_token}"}

    def _headers(self) -> dict[str, str]:
        headers = self._bearer()
        if self.unicore_username and self._unicore_password:
            # Lets the platform ask UNICORE about the job; never stored there.
            headers["X-Unicore-User"] = self.unicore_username
            headers["X-Unicore-Password"] = self._unicore_password
        headers.update(_ssh.as_headers(self._ssh_login()))
        return headers

    def _ssh_login(self) -> dict[str, str]:
        return _ssh.login_fields(self.ssh_username, self._ssh_key_file, self._ssh_password)

    def _call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        url = f"{self.compute_backend_url}{path}"
        response = _http.request(self._http, method, url, headers=self._headers(), **kwargs)
        _http.raise_for_status(response)
        return response

    # --- submission ----------------------------------------------------------------------

    def submit_run(
        self,
        experiment_id: int | str,
        mlflow_parameters: Mapping[str, Any] | None,
        mlproject_path: str | Path,
        backend_config_path: str | Path,
        entry_point: str = "main",
        run_name: str | None = None,
        *,
        progress: UploadProgress | None = None,
        hash_progress: UploadProgress | None = None,
        allow_undeclared_params: bool = False,
    ) -> SubmittedRun:
        """Validate the project locally, upload it, and start it as a tracked run.

        ``backend_config_path`` is relative to ``mlproject_path``. ``progress`` is an
        optional callable ``progress(sent_bytes, total_bytes)``; the totals count the image
        (when the platform does not hold it yet) and the zipped project. ``hash_progress``
        likewise, ``(read_bytes, total_bytes)``, while a local image is hashed (once per
        image file: the digest is remembered until the file changes).

        A local ``SingularityImage`` (or one built from the MLproject's ``docker_env`` with
        Apptainer) travels on its own, identified by its sha256: the platform keeps one copy
        per site, so an image it already holds is not sent again.

        A parameter the entry point does not declare is refused before anything is sent
        (the message names the closest declared one), unless ``allow_undeclared_params``
        passes it on to the command as ``--name value``, as MLflow does. Entry points that
        declare no parameters (``.py``/``.sh`` files) always pass them on.
        """
        project_dir = Path(mlproject_path).expanduser().resolve()
        config_relative = Path(backend_config_path)
        if config_relative.is_absolute():
            raise ConfigurationError(
                f"backend_config_path {str(backend_config_path)!r} must be relative to "
                f"mlproject_path {str(project_dir)!r}."
            )
        config_path = (project_dir / config_relative).resolve()
        if not config_path.is_relative_to(project_dir):
            raise ConfigurationError(
                f"backend_config_path {str(backend_config_path)!r} points outside the MLproject "
                f"directory {str(project_dir)!r}."
            )
        return self.submit_project(
            experiment_id,
            mlflow_parameters,
            project_dir,
            load_backend_config(config_path),
            entry_point,
            run_name,
            progress=progress,
            hash_progress=hash_progress,
            allow_undeclared_params=allow_undeclared_params,
        )

    def submit_project(
        self,
        experiment_id: int | str,
        mlflow_parameters: Mapping[str, Any] | None,
        mlproject_path: str | Path,
        config: BackendConfig,
        entry_point: str = "main",
        run_name: str | None = None,
        *,
        progress: UploadProgress | None = None,
        hash_progress: UploadProgress | None = None,
        allow_undeclared_params: bool = False,
    ) -> SubmittedRun:
        """Like :meth:`submit_run`, with the backend config already in memory."""
        project_dir = Path(mlproject_path).expanduser().resolve()
        project = load_project(project_dir)
        parameters = dict(mlflow_parameters or {})
        project.entry_point(entry_point).validate(  # fail before any upload
            parameters, allow_undeclared=allow_undeclared_params
        )
        self._check_unicore(config)
        image_path = _images.image_to_send(config, project)
        exclude = list(config.exclude)
        if image_path is not None:
            exclude += _images.project_excludes(image_path, project_dir)
        archive = zip_project_to_tempfile(project_dir, exclude)
        try:
            image = self._image(image_path, config, hash_progress) if image_path else None
            total = archive.stat().st_size + (
                image.size if image is not None and image.missing else 0
            )
            report = reporter(progress, total)
            sent = self._put_image(image, config, report) if image and image.missing else 0
            submitted = self._upload(
                experiment_id,
                entry_point,
                parameters,
                config,
                archive,
                run_name,
                _SubmitAttempt(uuid.uuid4().hex, report),
                image,
                allow_undeclared_params,
            )
        finally:
            archive.unlink(missing_ok=True)
        return dataclasses.replace(submitted, image_bytes_sent=sent)

    def _check_unicore(self, config: BackendConfig) -> None:
        if not config.unicore_api_url or config.compute_site:
            return
        missing = []
        if not self.unicore_username:
            missing.append("MANTIK_UNICORE_USERNAME")
        if not self._unicore_password:
            missing.append("MANTIK_UNICORE_PASSWORD")
        if not self.unicore_project:
            missing.append("MANTIK_UNICORE_PROJECT")
        if missing:
            raise MissingEnvironmentError(missing)

    @staticmethod
    def _image_params(config: BackendConfig) -> dict[str, str]:
        """Which site's image cache: the one the run goes to."""
        if config.compute_site:
            return {"site": config.compute_site}
        if config.unicore_api_url:
            return {"unicore_api_url": config.unicore_api_url}
        return {}

    def _image(
        self, path: Path, config: BackendConfig, hash_progress: UploadProgress | None
    ) -> _Image:
        size = path.stat().st_size
        digest = _images.sha256_of(path, reporter(hash_progress, size))
        url = f"{self.compute_backend_url}/images/{digest}"
        params = self._image_params(config)
        response = _http.request(self._http, "HEAD", url, params=params, headers=self._bearer())
        if response.status_code not in (200, 404):
            _http.raise_for_status(response)
        limit = response.headers.get(_IMAGE_LIMIT_HEADER, "")
        if response.status_code == 404 and limit.isdigit() and size > int(limit):
            raise PlatformError(
                f"The image {path} ({size} bytes) is larger than the platform accepts "
                f"({limit} bytes). Copy it to the site yourself and set RemoteImage to its "
                "path there, instead of SingularityImage.",
                status_code=413,
            )
        return _Image(path, digest, size, missing=response.status_code == 404)

    def _put_image(self, image: _Image, config: BackendConfig, report: Report) -> int:
        """Stream the image to the platform; the number of bytes sent."""
        sent = 0

        def body() -> Iterator[bytes]:
            nonlocal sent
            with image.path.open("rb") as handle:
                while chunk := handle.read(_images.CHUNK):
                    sent += len(chunk)
                    report(len(chunk))
                    yield chunk

        headers = {
            **self._bearer(),
            "Content-Length": str(image.size),
            "Content-Type": "application/octet-stream",
        }
        response = _http.request(
            self._http,
            "PUT",
            f"{self.compute_backend_url}/images/{image.digest}",
            params=self._image_params(config),
            content=body(),
            headers=headers,
        )
        if response.status_code == 400:
            _images.forget_digest(image.path)  # changed unnoticed: hash it afresh next time
        _http.raise_for_status(response)
        return sent

    def _upload(
        self,
        experiment_id: int | str,
        entry_point: str,
        parameters: dict[str, Any],
        config: BackendConfig,
        archive: Path,
        run_name: str | None,
        attempt: _SubmitAttempt,
        image: _Image | None,
        allow_undeclared_params: bool,
    ) -> SubmittedRun:
        data = {
            "entry_point": entry_point,
            "mlflow_parameters": json.dumps(parameters),
            "backend_config": json.dumps(config.to_wire()),
        }
        if run_name:
            data["run_name"] = run_name
        if allow_undeclared_params:
            data["allow_undeclared_params"] = "true"
        if self.unicore_project:
            data["unicore_project"] = self.unicore_project
        if config.unicore_api_url and self.unicore_username and self._unicore_password:
            data["unicore_user"] = self.unicore_username
            data["unicore_password"] = self._unicore_password
        data.update(self._ssh_login())
        if image is not None:
            data["image_digest"] = image.digest
        url = f"{self.compute_backend_url}/submit/{experiment_id}"
        while True:
            with archive.open("rb") as handle:
                files = {
                    "mlproject_zip": (
                        "mlproject.zip",
                        ProgressReader(handle, attempt.report),
                        "application/zip",
                    )
                }
                headers = {**self._headers(), _IDEMPOTENCY_HEADER: attempt.key}
                try:
                    response = _http.request(
                        self._http, "POST", url, data=data, files=files, headers=headers
                    )
                except PlatformUnreachable:
                    if not attempt.again(None):
                        raise
                    continue
            if not attempt.again(response):
                break
        _http.raise_for_status(response)
        body = response.json()
        return SubmittedRun(
            experiment_id=str(body["experiment_id"]),
            run_id=str(body["run_id"]),
            job_id=str(body.get("job_id") or body.get("unicore_job_id")),
            site=str(body.get("site", "")),
        )

    # --- after submission ----------------------------------------------------------------

    def get_status(self, run_id: str) -> RunInfo:
        return RunInfo.from_json(self._call("GET", f"/runs/{run_id}").json())

    def get_logs(
        self,
        run_id: str,
        *,
        tail_bytes: int | None = None,
        offset: int | None = None,
        length: int | None = None,
    ) -> str:
        """The run's log: all the platform keeps of it (the beginning and the end of the
        job's output), or the last ``tail_bytes``, or ``length`` bytes from ``offset``."""
        window = {"tail_bytes": tail_bytes, "offset": offset, "length": length}
        params = {name: value for name, value in window.items() if value is not None}
        return _watch.read_log(self._call, run_id, params)[0].decode(errors="replace")

    def cancel(self, run_id: str) -> RunInfo:
        return RunInfo.from_json(self._call("POST", f"/runs/{run_id}/cancel").json())

    def list_runs(
        self, experiment_id: int | str | None = None, state: str | None = None
    ) -> list[RunInfo]:
        params = {k: str(v) for k, v in (("experiment_id", experiment_id), ("state", state)) if v}
        return [
            RunInfo.from_json(item) for item in self._call("GET", "/runs", params=params).json()
        ]

    def follow_logs(self, run_id: str, interval: float = 2.0) -> Iterator[str]:
        """Yield new log text until the run ends (by byte offset: only what is new)."""
        return _watch.follow(self._call, lambda: self.get_status(run_id), run_id, interval)

    def wait(
        self,
        run_id: str,
        timeout: float | None = None,
        interval: float = 2.0,
        *,
        on_status: Callable[[RunInfo], object] | None = None,
    ) -> RunInfo:
        """Block until the run ends; returns its final state. ``on_status(info)`` is called
        with each state polled (e.g. to show it as it changes)."""
        return _watch.wait(lambda: self.get_status(run_id), run_id, timeout, interval, on_status)
