"""Reading a job's offline files safely: the job owns its folder and may plant symlinks.

The platform reads files that a job wrote (snapshot, artifacts). A job that swapped a file
or folder for a symlink to a platform file (a key, the central tracking database) must not
get it into its run: every path is resolved inside the job's offline folder, files are
opened with O_NOFOLLOW, and what is uploaded is a private copy of what was checked.
"""

from __future__ import annotations

import os
import shutil
import stat
from collections.abc import Iterator
from pathlib import Path

from mantik.server.compute.job_folder import ARTIFACTS


class UnsafePath(Exception):
    """A path of the job's offline folder leads outside it."""


def checked_dir(path: Path, root: Path) -> Path:
    """``path`` (inside the trusted folder ``root``) if no symlink leads it elsewhere."""
    real = Path(os.path.realpath(path))
    if real != Path(os.path.realpath(root)) / path.relative_to(root):
        raise UnsafePath(f"{path} is not the job's own folder")
    return real


def node_path(uri: str, offline_dir: Path) -> Path | None:
    """The platform's view of a local artifact URI written on the node, if it lies in the
    job's offline artifact folder (the node may see the job folder under another path)."""
    path = uri.removeprefix("file://")
    marker = f"/{offline_dir.name}/{ARTIFACTS}/"
    at = path.rfind(marker)
    if at < 0:
        return None
    relative = path[at + len(marker) :]
    candidate = offline_dir / ARTIFACTS / relative
    real = os.path.realpath(candidate)
    if not real.startswith(os.path.realpath(offline_dir / ARTIFACTS) + os.sep):
        return None
    return Path(real)


def walk_files(root: Path) -> Iterator[tuple[str, os.stat_result]]:
    """Regular files under ``root`` as (relative POSIX path, stat); symlinks are skipped."""
    for folder, dirs, files in os.walk(root, followlinks=False):
        dirs.sort()
        for name in sorted(files):
            path = os.path.join(folder, name)
            info = os.lstat(path)
            if stat.S_ISREG(info.st_mode):
                yield Path(path).relative_to(root).as_posix(), info


def read_job_text(path: Path, job_dir: Path, limit: int = 64 * 1024 * 1024) -> str:
    """Text of a file the job wrote (e.g. its log), never through a symlink; "" if absent."""
    try:
        checked_dir(path.parent, job_dir)
        descriptor = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except (OSError, UnsafePath):  # absent, or a symlink (ELOOP), or outside the job
        return ""
    with os.fdopen(descriptor, "rb") as handle:
        if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
            return ""
        return handle.read(limit).decode(errors="replace")


def private_copy(path: Path, target: Path) -> os.stat_result:
    """Copy the regular file ``path`` (never through a symlink) to ``target``; returns the
    stat of what was copied."""
    descriptor = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    with os.fdopen(descriptor, "rb") as source:
        info = os.fstat(source.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise UnsafePath(f"{path} is not a regular file")
        target.parent.mkdir(parents=True, exist_ok=True)
        with target.open("wb") as copy:
            shutil.copyfileobj(source, copy, 1024 * 1024)
    return info
