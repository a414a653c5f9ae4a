"""Running the real platform (``mantik server start``) as a subprocess for tests."""

from __future__ import annotations

import itertools
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx

_counter = itertools.count()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class PlatformProcess:
    url: str
    data_dir: Path
    log_path: Path
    env: dict[str, str]
    process: subprocess.Popen[bytes]
    passwords: list[str] = field(default_factory=list)

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

    def new_user(self, prefix: str = "user", *, admin: bool = False, ready: bool = True) -> tuple[str, str]:
        """Create a user; with ``ready`` its temporary password is already replaced."""
        username = f"{prefix}{next(_counter)}-{os.getpid()}"
        temporary = f"Temp-{username}-1!"
        self.admin("users", "create", username, "--temporary-password", temporary,
                   *(["--admin"] if admin else []))
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

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")


def _wait_ready(url: str, process: subprocess.Popen[bytes], log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"platform exited with {process.returncode}:\n{log.read_text()}")
        try:
            if httpx.get(f"{url}/api/mantik/health", timeout=1).status_code == 200:
                # Both workers must be up before timing-sensitive tests hit them.
                if httpx.get(f"{url}/version", timeout=5).status_code in (200, 401):
                    return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"platform did not start within {timeout}s:\n{log.read_text()}")


@contextmanager
def start_platform(
    data_dir: Path, *, env: dict[str, str] | None = None, workers: int = 2, timeout: float = 90
) -> Iterator[PlatformProcess]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log_path = data_dir / "platform.log"
    extra = {"MANTIK_DATA_DIR": str(data_dir), **(env or {})}
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "mantik.cli", "server", "start",
             "--port", str(port), "--workers", str(workers)],
            env={**os.environ, **extra, "PYTHONUNBUFFERED": "1"},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        _wait_ready(url, process, log_path, timeout)
        yield PlatformProcess(url, data_dir, log_path, extra, process)
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, 9)
            process.wait()
