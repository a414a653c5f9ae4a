"""Server processes for benchmarks: start, wait until ready, measure memory, always stop.

Memory is read from ``/proc`` (no psutil): the resident set of a server is the sum of
``VmRSS`` over its whole process tree (shared pages of forked workers count once per process,
as ``ps``/``top`` show them).
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
MB = 1024 * 1024


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _stat_fields(pid: int) -> list[str] | None:
    """Fields of ``/proc/PID/stat`` after the command name (``[0]`` is the state)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2 :].split()


def start_time(pid: int) -> int | None:
    fields = _stat_fields(pid)
    return int(fields[19]) if fields else None


def _parents() -> dict[int, int]:
    parents: dict[int, int] = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            fields = _stat_fields(int(entry.name))
            if fields:
                parents[int(entry.name)] = int(fields[1])
    return parents


def process_tree(root: int) -> list[int]:
    """``root`` and all its descendants that are alive now."""
    children: dict[int, list[int]] = {}
    for pid, ppid in _parents().items():
        children.setdefault(ppid, []).append(pid)
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(children.get(pid, []))
    return tree


def rss_bytes(pid: int) -> int:
    try:
        resident = Path(f"/proc/{pid}/statm").read_text().split()[1]
    except (OSError, IndexError):
        return 0  # gone (or a zombie)
    return int(resident) * PAGE_SIZE


REPO = Path(__file__).resolve().parent.parent


def one_team_site(name: str, driver: str, user: str, **extra: object) -> dict[str, object]:
    """A site whose jobs run as the platform's account for ``user`` (mode ``platform``):
    the benchmarks measure speed, not who a job runs as, on a root machine too."""
    return {"name": name, "driver": driver, "run_as": "platform", "submitters": [user], **extra}


def clean_env(home: Path, **extra: str) -> dict[str, str]:
    """This environment without MLflow/mantik settings, with a scratch HOME (token cache)
    and this checkout importable; then ``extra``."""
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "_MLFLOW_", "MANTIK_"))
    }
    home.mkdir(parents=True, exist_ok=True)
    pythonpath = [str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])]
    env.update(HOME=str(home), PYTHONPATH=os.pathsep.join(pythonpath), PYTHONUNBUFFERED="1")
    return {**env, **extra}


@dataclass
class Sample:
    at: float  # time.monotonic(): CLOCK_MONOTONIC, comparable across processes
    rss: int
    processes: int


class RssSampler:
    """Samples the RSS of a process tree in a thread, every ``interval`` seconds.

    The tree is re-scanned once a second (a full ``/proc`` scan is the costly part);
    in between only the known processes' ``statm`` is read.
    """

    def __init__(self, root: int, interval: float = 0.05, rescan: float = 1.0) -> None:
        self.root = root
        self.interval = interval
        self.rescan = rescan
        self.samples: list[Sample] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="rss-sampler", daemon=True)

    def _loop(self) -> None:
        pids, scanned = process_tree(self.root), time.monotonic()
        while not self._stop.is_set():
            now = time.monotonic()
            if now - scanned >= self.rescan:
                pids, scanned = process_tree(self.root), now
            rss = [rss_bytes(pid) for pid in pids]
            self.samples.append(Sample(now, sum(rss), sum(r > 0 for r in rss)))
            self._stop.wait(self.interval)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def before(self, moment: float) -> int:
        """The last sample taken at or before ``moment`` (else the first one)."""
        earlier = [s.rss for s in self.samples if s.at <= moment]
        if earlier:
            return earlier[-1]
        return self.samples[0].rss if self.samples else 0

    def peak(self, start: float | None = None, end: float | None = None) -> int:
        """Highest sample in [start, end] (with one interval of slack on both sides)."""
        lo = -float("inf") if start is None else start - self.interval
        hi = float("inf") if end is None else end + self.interval
        values = [s.rss for s in self.samples if lo <= s.at <= hi]
        return max(values, default=0)


def tree_rss(root: int) -> tuple[int, int]:
    """(RSS bytes, live processes) of ``root``'s tree now."""
    rss = [rss_bytes(pid) for pid in process_tree(root)]
    return sum(rss), sum(r > 0 for r in rss)


def tree_cpu_seconds(root: int) -> float:
    """User + system CPU time used so far by the live processes of ``root``'s tree."""
    ticks = 0
    for pid in process_tree(root):
        fields = _stat_fields(pid)
        if fields:
            ticks += int(fields[11]) + int(fields[12])  # utime, stime
    return ticks / CLOCK_TICKS


def _cpu_times() -> tuple[int, int]:
    """(busy, total) jiffies of all CPUs from ``/proc/stat``."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return sum(fields) - idle, sum(fields)


def machine_busy(seconds: float = 1.0) -> float:
    """Fraction of all CPUs busy over the next ``seconds`` (other work on the machine)."""
    busy0, total0 = _cpu_times()
    time.sleep(seconds)
    busy1, total1 = _cpu_times()
    return (busy1 - busy0) / max(total1 - total0, 1)


def http_status(url: str, timeout: float = 2.0) -> int | None:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            status: int = response.status
            return status
    except urllib.error.HTTPError as exc:
        return exc.code
    except (OSError, urllib.error.URLError):
        return None


@dataclass
class Server:
    """A server started in its own session; ``stop`` ends its whole tree."""

    name: str
    url: str
    process: subprocess.Popen[bytes]
    log_path: Path
    # (pid, start time) of every process seen in the tree: children that leave the process
    # group (or outlive their parent) are still found and ended.
    seen: set[tuple[int, int]] = field(default_factory=set)
    started_at: float = field(default_factory=time.monotonic)

    def remember_tree(self) -> None:
        for pid in process_tree(self.process.pid):
            started = start_time(pid)
            if started is not None:
                self.seen.add((pid, started))

    def _alive(self) -> list[int]:
        return [pid for pid, started in self.seen if start_time(pid) == started]

    def stop(self, grace: float = 2.0) -> None:
        self.remember_tree()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            self.process.poll()
            if not self._alive():
                return
            time.sleep(0.1)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        for pid in self._alive():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.process.wait(timeout=10)

    def log_tail(self, lines: int = 30) -> str:
        text = self.log_path.read_text(errors="replace")
        return "\n".join(text.splitlines()[-lines:])


def wait_until(
    server: Server, ready: Callable[[], bool], timeout: float, poll: float = 0.1
) -> float:
    """Seconds from the server's start until ``ready()``; raises if it exits or times out."""
    while time.monotonic() - server.started_at < timeout:
        if server.process.poll() is not None:
            raise RuntimeError(
                f"{server.name} exited with {server.process.returncode}:\n{server.log_tail()}"
            )
        if ready():
            return time.monotonic() - server.started_at
        time.sleep(poll)
    raise RuntimeError(f"{server.name} not ready within {timeout:.0f} s:\n{server.log_tail()}")


def settle(
    server: Server, window: float = 3.0, tolerance: float = 0.02, cap: float = 30.0
) -> Sample:
    """Wait until the tree's RSS and process count stop changing; return that state.

    Stable means: over the last ``window`` seconds the process count is constant and the
    RSS varies by less than ``tolerance``.
    """
    history: list[Sample] = []
    started = time.monotonic()
    while True:
        now = time.monotonic()
        rss, count = tree_rss(server.process.pid)
        history.append(Sample(now, rss, count))
        server.remember_tree()
        recent = [s for s in history if s.at >= now - window]
        if now - started >= window and len({s.processes for s in recent}) == 1:
            low, high = min(s.rss for s in recent), max(s.rss for s in recent)
            if high - low <= tolerance * high:
                return history[-1]
        if now - started >= cap:
            return history[-1]
        time.sleep(0.25)


_LIBC = ctypes.CDLL(None, use_errno=True)
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """In the child before exec: get SIGTERM when the bench process dies (even by SIGKILL)."""
    _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


@contextlib.contextmanager
def running(
    name: str,
    command: list[str],
    *,
    env: dict[str, str],
    url: str,
    log_path: Path,
    cwd: Path,
) -> Iterator[Server]:
    """Start ``command`` in a new session (own process group); stop its tree on exit."""
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command,
            env=env,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C reaches only us; we end the servers ourselves
            preexec_fn=_die_with_parent,  # safe: it only calls prctl
        )
    server = Server(name, url, process, log_path)
    try:
        yield server
    finally:
        server.stop()


def create_user(
    url: str, data_dir: Path, env: dict[str, str], username: str, temporary: str, password: str
) -> None:
    """Create a platform user as an admin does (``mantik admin users create``), then replace
    its temporary password as the user would."""
    created = subprocess.run(
        [
            sys.executable, "-m", "mantik.cli", "admin", "users", "create", username,
            "--temporary-password", temporary, "--data-dir", str(data_dir),
        ],
        env=env, cwd=data_dir, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    if created.returncode != 0:
        raise RuntimeError(f"creating the user failed: {created.stderr[-2000:]}")
    replace_temporary_password(url, username, temporary, password)


def replace_temporary_password(url: str, username: str, temporary: str, password: str) -> None:
    """Replace a new account's temporary password, as its user would (POST /api/mantik/password)."""
    body = {"username": username, "password": temporary, "new_password": password}
    request = urllib.request.Request(
        f"{url}/api/mantik/password",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        if response.status != 204:
            raise RuntimeError(f"password change answered {response.status}")
