"""Debian's HAProxy on loopback in front of platform replicas (tests and bench part 6).

HAProxy runs in the foreground (``haproxy -db -f cfg``) from a config in a scratch folder,
balances round-robin, takes a replica out while its health route fails, replaces whatever
X-Forwarded-For a client sent with the address it really connected from, and says which
scheme the client used (X-Forwarded-Proto), as a TLS-terminating balancer would.
"""

from __future__ import annotations

import csv
import io
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

HEALTH_ROUTE = "/api/mantik/health"


def haproxy_binary() -> str | None:
    # Debian puts it in /usr/sbin, which a non-root PATH often lacks.
    return shutil.which("haproxy", path=f"{os.environ.get('PATH', '')}:/usr/sbin")


def render_config(
    port: int, backends: Sequence[str], stats_socket: Path, forwarded_proto: str | None
) -> str:
    """The HAProxy config: one frontend on 127.0.0.1:port, one backend per replica URL."""
    servers = []
    for index, url in enumerate(backends):
        parts = urlsplit(url)
        servers.append(
            f"    server replica{index} {parts.hostname}:{parts.port} check inter 500ms "
            "fall 2 rise 1"
        )
    proto = (
        [f"    http-request set-header X-Forwarded-Proto {forwarded_proto}"]
        if forwarded_proto
        else []
    )
    return "\n".join(
        [
            "global",
            f"    stats socket {stats_socket} mode 600 level admin",
            "    maxconn 4096",
            "defaults",
            "    mode http",
            "    timeout connect 5s",
            # Uploads and large log_batch calls take a while; idle keep-alive ends sooner.
            "    timeout client 10m",
            "    timeout server 10m",
            "    timeout http-keep-alive 30s",
            "frontend platform",
            f"    bind 127.0.0.1:{port}",
            # A client's own X-Forwarded-For goes: the replicas get one address, the real one
            # (uvicorn reads the list from the right, but other readers take the first).
            "    http-request del-header X-Forwarded-For",
            *proto,
            "    option forwardfor",
            "    default_backend replicas",
            "backend replicas",
            "    balance roundrobin",
            "    option httpchk",
            f"    http-check send meth GET uri {HEALTH_ROUTE} ver HTTP/1.1 hdr Host 127.0.0.1",
            "    http-check expect status 200",
            *servers,
            "",
        ]
    )


@dataclass
class Balancer:
    url: str
    config_path: Path
    stats_socket: Path
    process: subprocess.Popen[bytes]
    log_path: Path

    def server_stats(self) -> dict[str, dict[str, str]]:
        """HAProxy's ``show stat`` per replica (``status``, ``stot`` requests, ``hrsp_5xx``…)."""
        with socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(5)
            sock.connect(str(self.stats_socket))
            sock.sendall(b"show stat\n")
            chunks = []
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        text = b"".join(chunks).decode().lstrip("# ")
        rows = csv.DictReader(io.StringIO(text))
        return {
            row["svname"]: row
            for row in rows
            if row["pxname"] == "replicas" and row["svname"] not in ("BACKEND", "FRONTEND")
        }

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")


def _wait_all_up(balancer: Balancer, replicas: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    stats: dict[str, dict[str, str]] = {}
    while time.monotonic() < deadline:
        if balancer.process.poll() is not None:
            raise RuntimeError(f"haproxy exited:\n{balancer.log_text()}")
        try:
            stats = balancer.server_stats()
        except OSError:
            stats = {}
        if len(stats) == replicas and all(s["status"] == "UP" for s in stats.values()):
            return
        time.sleep(0.2)
    states = {name: s.get("status") for name, s in stats.items()}
    raise RuntimeError(f"replicas not all UP within {timeout}s: {states}\n{balancer.log_text()}")


@contextmanager
def start_balancer(
    backends: Sequence[str],
    port: int,
    *,
    forwarded_proto: str | None = "https",
    timeout: float = 30,
) -> Iterator[Balancer]:
    """HAProxy on ``127.0.0.1:port`` in front of ``backends`` (base URLs), until the block ends.

    ``port`` is chosen by the caller: replicas need the public URL before they start.
    """
    binary = haproxy_binary()
    if binary is None:
        raise RuntimeError("haproxy is not installed: run scripts/system-deps.sh")
    with tempfile.TemporaryDirectory(prefix="mantik-haproxy-") as scratch:
        folder = Path(scratch)
        stats_socket = folder / "stats.sock"
        config_path = folder / "haproxy.cfg"
        config_path.write_text(render_config(port, backends, stats_socket, forwarded_proto))
        log_path = folder / "haproxy.log"
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                [binary, "-db", "-f", str(config_path)],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        balancer = Balancer(
            f"http://127.0.0.1:{port}", config_path, stats_socket, process, log_path
        )
        try:
            _wait_all_up(balancer, len(backends), timeout)
            yield balancer
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
