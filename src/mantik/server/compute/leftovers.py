"""What a crash leaves behind, and how it is told from work still going on.

Scratch files and folders a platform process makes while it works (an upload, a staging
folder) and job records it is handing to a site carry its *process mark*: host, pid and the
process's start time. A mark whose process is gone on this host is abandoned at once; one
from another host (replicas sharing a data dir) only after ``max_age``.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import socket
import time
from collections.abc import Iterator
from functools import cache
from pathlib import Path

log = logging.getLogger("mantik.sweep")

_MARK = re.compile(r"^(?P<host>[A-Za-z0-9.-]{1,64})_(?P<pid>[0-9]+)_(?P<start>[0-9]+)$")
_MARKED_NAME = re.compile(r"^(?P<mark>[A-Za-z0-9.-]{1,64}_[0-9]+_[0-9]+)_[0-9A-Za-z_]+(?:\.|$)")
UPLOAD_PREFIX = "upload-"
MLFLOW_PARTIAL_PREFIX = ".artifact.uploading."  # MLflow's local artifact uploads
STAGING = "staging"


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9.-]", "-", socket.gethostname())[:64] or "host"


def _start_time(pid: int) -> int | None:
    """When process ``pid`` started (clock ticks since boot), None if there is none."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[19])


@cache
def process_mark() -> str:
    """This process's mark: ``<host>_<pid>_<start time>``."""
    pid = os.getpid()
    return f"{_host()}_{pid}_{_start_time(pid) or 0}"


def mark_abandoned(mark: str | None, age_seconds: float, max_age: float) -> bool:
    """True when the process that made ``mark`` is gone (or the mark is older than
    ``max_age`` and made elsewhere, or unreadable)."""
    match = _MARK.match(mark or "")
    if match is None or match["host"] != _host():
        return age_seconds > max_age
    return _start_time(int(match["pid"])) != int(match["start"])


def marked_name(prefix: str, suffix: str = "") -> str:
    """A scratch name carrying this process's mark, unique within it."""
    return f"{prefix}{process_mark()}_{os.urandom(6).hex()}{suffix}"


def _mark_of(name: str, prefix: str) -> str | None:
    # Host names may hold dots (login01.juwels…) and tempfile's random part underscores.
    match = _MARKED_NAME.match(name.removeprefix(prefix))
    return match["mark"] if match else None


def _age(path: Path, now: float) -> float:
    try:
        return now - path.lstat().st_mtime
    except OSError:
        return 0.0


def _remove(path: Path) -> bool:
    try:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()
    except FileNotFoundError:
        return False
    except OSError as exc:
        log.warning("could not remove leftover %s: %s", path, exc)
        return False
    return True


def sweep_scratch(data_dir: Path, max_age: float) -> int:
    """Remove abandoned uploads and staging folders of ``data_dir``; how many."""
    now = time.time()
    candidates: list[tuple[Path, str]] = []
    if data_dir.is_dir():
        candidates += [(p, UPLOAD_PREFIX) for p in data_dir.glob(f"{UPLOAD_PREFIX}*")]
    staging = data_dir / STAGING
    if staging.is_dir():
        candidates += [(p, "") for p in staging.iterdir()]
    removed = 0
    for path, prefix in candidates:
        if mark_abandoned(_mark_of(path.name, prefix), _age(path, now), max_age):
            removed += _remove(path)
    return removed


def _partial_uploads(root: Path) -> Iterator[Path]:
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if not Path(folder, d).is_symlink()]
        for name in files:
            if name.startswith(MLFLOW_PARTIAL_PREFIX):
                yield Path(folder, name)


def sweep_partial_artifacts(root: Path, idle_seconds: float) -> int:
    """Remove MLflow's half-written artifact uploads under ``root`` untouched for
    ``idle_seconds`` (an upload going on writes all the time); how many."""
    now = time.time()
    return sum(_remove(p) for p in _partial_uploads(root) if _age(p, now) > idle_seconds)
