"""The platform's processes: the supervisor's workers end with it, whatever killed it; a
busy port is refused at once."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.support.platform import free_port, start_platform


def _children(pid: int) -> list[int]:
    found = []
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except (FileNotFoundError, ProcessLookupError):
            continue
        state, parent = stat.rsplit(")", 1)[1].split()[:2]
        if int(parent) == pid and state != "Z":
            found.append(int(entry))
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state not in ("Z", "X")


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def test_workers_end_when_the_supervisor_is_killed(tmp_path: Path) -> None:
    port, data = free_port(), tmp_path / "data"
    data.mkdir()
    with start_platform(data, port=port, workers=2) as platform:
        workers = _children(platform.process.pid)
        assert len(workers) >= 2
        platform.process.send_signal(signal.SIGKILL)
        platform.process.wait()
        deadline = time.monotonic() + 10
        try:
            while any(map(_alive, workers)) and time.monotonic() < deadline:
                time.sleep(0.1)
            assert not any(map(_alive, workers)), "workers outlived their supervisor"
        finally:
            for worker in filter(_alive, workers):
                os.kill(worker, signal.SIGKILL)
        assert _port_free(port)
    with start_platform(data, port=port, workers=2) as again:
        assert httpx.get(f"{again.url}/api/mantik/health").status_code == 200


def test_a_busy_port_is_refused_before_the_platform_loads(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        started = time.monotonic()
        start = ["server", "start", "--port", str(port), "--data-dir", str(tmp_path / "data")]
        result = subprocess.run(
            [sys.executable, "-X", "importtime", "-m", "mantik.cli", *start],
            capture_output=True,
            text=True,
            timeout=120,
        )
        took = time.monotonic() - started
    assert result.returncode != 0
    messages = [line for line in result.stderr.splitlines() if not line.startswith("import time:")]
    assert any(f"port {port} on 127.0.0.1 is in use" in line for line in messages), messages
    imported = [
        line.rsplit("|", 1)[1].strip()
        for line in result.stderr.splitlines()
        if line.startswith("import time:")
    ]
    assert not [name for name in imported if name.split(".")[0] in ("mlflow", "uvicorn")]
    assert "Traceback" not in result.stderr
    assert took < 10  # MLflow alone takes about as long to import
