"""Running the real platform (``mantik server start``) as a subprocess for tests."""

from __future__ import annotations

import atexit
import functools
import itertools
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from mantik.server import shared_secrets
from mantik.server.compute.service import ComputeService
from mantik.server.identity.keys import SigningKey
from mantik.server.identity.service import IdentityService
from mantik.server.platform import build
from mantik.server.settings import ServerSettings
from mantik.server.tracking import mlflow_app
from tests.support import accounts
from tests.support.services import unavailable

_counter = itertools.count()


def unique(prefix: str) -> str:
    """A fresh name: names are platform-wide, and a platform lives for the test session."""
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def share_experiment(
    client: httpx.Client, experiment_id: str, username: str, permission: str = "READ"
) -> httpx.Response:
    """The owner's ``client`` grants ``username`` a permission on an experiment (MLflow's
    grant API, as `mantik experiments share` calls it)."""
    grant = {
        "username": username,
        "resource_type": "experiment",
        "resource_id": experiment_id,
        "permission": permission,
    }
    return client.post("/api/3.0/mlflow/users/permissions/grant", json=grant)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass(eq=False)
class PlatformProcess:
    url: str
    data_dir: Path
    log_path: Path
    env: dict[str, str]
    process: subprocess.Popen[bytes]
    passwords: list[str] = field(default_factory=list)
    # Clients handed to tests, closed when the platform stops (no socket left to the GC).
    clients: list[httpx.Client] = field(default_factory=list)

    def admin(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run ``mantik admin …`` against this platform's stores."""
        return subprocess.run(
            [sys.executable, "-m", "mantik.cli", "admin", *args, "--data-dir", str(self.data_dir)],
            env={**os.environ, **self.env},
            capture_output=True,
            text=True,
            check=check,
            timeout=120,
        )

    def new_user(
        self,
        prefix: str = "user",
        *,
        admin: bool = False,
        ready: bool = True,
        os_account: bool = False,
        username: str | None = None,
    ) -> tuple[str, str]:
        """Create a user; with ``ready`` its temporary password is already replaced; with
        ``os_account`` (as root) an OS account of the same name runs its jobs."""
        username = username or f"{prefix}{next(_counter)}-{os.getpid()}"
        if os_account and os.geteuid() == 0:
            accounts.os_account(username)
        temporary = f"Temp-{username}-1!"
        # In-process (as `mantik admin users create` does) to spare a CLI start per user.
        self._identity().create_user(username, is_admin=admin, temporary_password=temporary)
        mlflow_app.ensure_user(self._mlflow_store(), username, is_admin=admin)
        self.passwords.append(temporary)
        if not ready:
            return username, temporary
        password = f"Pw-{username}-9?"
        response = httpx.post(
            f"{self.url}/api/mantik/password",
            json={"username": username, "password": temporary, "new_password": password},
        )
        assert response.status_code == 204, response.text
        self.passwords.append(password)
        return username, password

    def access_token(self, user: tuple[str, str]) -> str:
        response = httpx.post(
            f"{self.url}/api/mantik/tokens/create",
            json={"username": user[0], "password": user[1]},
        )
        assert response.status_code == 201, response.text
        token: str = response.json()["AccessToken"]
        return token

    def client(self, user: tuple[str, str]) -> httpx.Client:
        """An HTTP client on the platform, signed in as ``user`` with a Bearer token."""
        headers = {"Authorization": f"Bearer {self.access_token(user)}"}
        client = httpx.Client(base_url=self.url, headers=headers)
        self.clients.append(client)
        return client

    def signing_key(self) -> SigningKey:
        """The key the platform signs tokens with now."""
        return self._identity().tokens.keys.signing_key()

    def shared_secret(self, name: str) -> str:
        """A secret the platform keeps in its database (e.g. Flask's "flask-secret")."""
        return shared_secrets.shared_secret(build(self.settings()).db, name)

    def session_cookie(self, user: tuple[str, str]) -> str:
        """The browser session cookie a sign-in at /login sets."""
        response = httpx.post(
            f"{self.url}/login",
            data={"username": user[0], "password": user[1], "next": "/"},
            headers={"Origin": self.url},
        )
        assert response.status_code == 303, response.text
        return response.cookies["mantik_session"]

    def settings(self) -> ServerSettings:
        keys = ("MANTIK_DATABASE_URI", "MANTIK_AUTH_DATABASE_URI", "MANTIK_BACKEND_STORE_URI")
        uris = {k.removeprefix("MANTIK_").lower(): self.env[k] for k in keys if k in self.env}
        sites = self.env.get("MANTIK_SITES_FILE")
        return ServerSettings(
            data_dir=self.data_dir,
            port=int(self.url.rsplit(":", 1)[1]),
            sites_file=Path(sites) if sites else None,
            jobs_dir=self.jobs_dir,
            job_path=self.env.get("MANTIK_JOB_PATH"),
            signing_key_file=self.env.get("MANTIK_SIGNING_KEY_FILE"),
            **uris,
        )

    @property
    def jobs_dir(self) -> Path:
        """Where the job folders live (``<site>/<run id>`` inside)."""
        return Path(self.env["MANTIK_JOBS_DIR"])

    def image_cache(self, site: str) -> Path:
        """The image cache of a site whose jobs read it in place (local, SLURM)."""
        return self.jobs_dir / site / ".images"

    def compute_service(self) -> ComputeService:
        """The platform's compute parts in this process, on its stores and sites."""
        settings = self.settings()
        parts = build(settings)
        return ComputeService(settings, parts.db, parts.tokens, parts.identity)

    @functools.cache  # noqa: B019 (one per platform process, lives as long as the test session)
    def _identity(self) -> IdentityService:
        return build(self.settings()).identity

    @functools.cache  # noqa: B019
    def _mlflow_store(self) -> Any:
        return mlflow_app.auth_store(self.settings())

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")


def _wait_ready(url: str, process: subprocess.Popen[bytes], log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"platform exited with {process.returncode}:\n{log.read_text()}")
        try:
            # The MLflow side (/version) must answer too, not only our health route.
            if httpx.get(f"{url}/api/mantik/health", timeout=1).status_code == 200 and (
                httpx.get(f"{url}/version", timeout=5).status_code in (200, 401)
            ):
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"platform did not start within {timeout}s:\n{log.read_text()}")


# Jobs may run under other accounts (the platform as root gives each user its own): their
# folders lie where every account can pass through, and they run Debian's Python with
# MLflow that scripts/job-python.sh builds (this interpreter may lie under /root).
JOB_PYTHON = Path(os.environ.get("MANTIK_JOB_PYTHON", "/opt/mantik-job-python"))


_JOBS_DIRS: dict[Path, Path] = {}  # data dir → its jobs dir, kept across restarts


def job_settings(data_dir: Path) -> dict[str, str]:
    if data_dir not in _JOBS_DIRS:
        jobs = Path(tempfile.mkdtemp(prefix="mantik-test-jobs-"))
        jobs.chmod(0o711)
        _JOBS_DIRS[data_dir] = jobs
        atexit.register(shutil.rmtree, jobs, ignore_errors=True)
    settings = {"MANTIK_JOBS_DIR": str(_JOBS_DIRS[data_dir])}
    if os.geteuid() == 0:
        if not (JOB_PYTHON / "bin" / "python").exists():
            unavailable(f"the job Python {JOB_PYTHON} (scripts/job-python.sh)")
        settings["MANTIK_JOB_PATH"] = str(JOB_PYTHON / "bin")
    return settings


@contextmanager
def start_platform(
    data_dir: Path,
    *,
    env: dict[str, str] | None = None,
    workers: int = 2,
    timeout: float = 90,
    port: int | None = None,
) -> Iterator[PlatformProcess]:
    port = port or free_port()
    url = f"http://127.0.0.1:{port}"
    log_path = data_dir / "platform.log"
    extra = {"MANTIK_DATA_DIR": str(data_dir), **job_settings(data_dir), **(env or {})}
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "mantik.cli",
                "server",
                "start",
                "--port",
                str(port),
                "--workers",
                str(workers),
            ],
            env={**os.environ, **extra, "PYTHONUNBUFFERED": "1"},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        _wait_ready(url, process, log_path, timeout)
        platform = PlatformProcess(url, data_dir, log_path, extra, process)
        yield platform
        for client in platform.clients:
            client.close()
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, 9)
            process.wait()
