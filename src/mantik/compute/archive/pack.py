"""Zipping a project as a stream: the files an upload takes (excludes, skipped folders),
written in 1 MiB chunks, zip64 where members are large."""

from __future__ import annotations

import fnmatch
import os
import stat
import tempfile
import time
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Final

from mantik._exceptions import ConfigurationError

ALWAYS_SKIPPED: Final = frozenset({".git", "__pycache__", "mlruns", ".mantik"})


CHUNK: Final = 1024 * 1024


_ZIP64_FROM: Final = 1024**3  # zipfile refuses to grow a member past 2 GiB without zip64


@dataclass(frozen=True)
class ZipSummary:
    """What :func:`write_project_zip` stored: number of files and their total size."""

    files: int
    bytes_in: int


def iter_project_files(root: Path, exclude: Sequence[str] = ()) -> Iterator[Path]:
    """Files to upload, as sorted paths relative to ``root``.

    Skips ``.git``, ``__pycache__``, ``mlruns`` and ``.mantik``. ``exclude`` takes
    gitignore-like globs: ``*.sif`` matches a name at any depth, ``data/**`` or ``/out``
    a path from the root, ``checkpoints/`` directories only. A symbolic link is followed
    when its target is inside ``root`` and refused otherwise.
    """
    top = _project_root(root)
    yield from _walk(top, top, (), _Excludes(exclude), frozenset({top}))


def write_project_zip(root: Path, exclude: Sequence[str], dest: BinaryIO) -> ZipSummary:
    """Write a deflated zip of the project to ``dest`` (which need not be seekable)."""
    files = total = 0
    with zipfile.ZipFile(dest, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for relative in iter_project_files(root, exclude):
            try:
                source = open(root / relative, "rb")  # noqa: SIM115 - closed just below
            except OSError as exc:
                raise ConfigurationError(
                    f"Cannot read {relative.as_posix()!r} in project {root}: {exc.strerror}. "
                    "Fix its permissions or add it to Exclude."
                ) from exc
            with source:
                info = _zip_info(relative, os.fstat(source.fileno()))
                with archive.open(info, "w", force_zip64=info.file_size >= _ZIP64_FROM) as out:
                    while chunk := source.read(CHUNK):
                        out.write(chunk)
                        total += len(chunk)
            files += 1
    return ZipSummary(files=files, bytes_in=total)


def zip_project_to_tempfile(root: Path, exclude: Sequence[str] = ()) -> Path:
    """Zip the project into a new temporary file; the caller deletes it."""
    fd, name = tempfile.mkstemp(prefix="mantik-project-", suffix=".zip")
    path = Path(name)
    try:
        with os.fdopen(fd, "wb") as dest:
            write_project_zip(root, exclude, dest)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return path


def _project_root(root: Path) -> str:
    if not root.exists():
        raise ConfigurationError(f"Project directory {root} does not exist.")
    if not root.is_dir():
        raise ConfigurationError(f"Project path {root} is not a directory.")
    return os.path.realpath(root)


class _Excludes:
    """gitignore-like globs: ``*`` stays within one path segment, ``**`` spans any."""

    def __init__(self, patterns: Sequence[str]) -> None:
        self._rules: list[tuple[tuple[str, ...], bool, bool]] = []  # segments, anchored, dirs
        if isinstance(patterns, str):
            raise ConfigurationError(f"Exclude must be a list of globs, got {patterns!r}.")
        for pattern in patterns:
            if not isinstance(pattern, str):
                raise ConfigurationError(f"Exclude pattern {pattern!r} must be a string.")
            text = pattern.strip().removeprefix("./")
            segments = tuple(s for s in text.split("/") if s not in ("", "."))
            if not segments:
                raise ConfigurationError(f"Exclude pattern {pattern!r} names no file.")
            anchored = "/" in text.rstrip("/")
            self._rules.append((segments, anchored, text.endswith("/")))

    def match(self, parts: tuple[str, ...], is_dir: bool) -> bool:
        for segments, anchored, dirs_only in self._rules:
            if dirs_only and not is_dir:
                continue
            if anchored:
                if _match_segments(segments, parts):
                    return True
            elif fnmatch.fnmatchcase(parts[-1], segments[0]):
                return True
        return False


def _match_segments(pattern: tuple[str, ...], parts: tuple[str, ...]) -> bool:
    if not pattern:
        return not parts
    head, rest = pattern[0], pattern[1:]
    if head == "**":
        return any(_match_segments(rest, parts[i:]) for i in range(len(parts) + 1))
    return bool(parts) and fnmatch.fnmatchcase(parts[0], head) and _match_segments(rest, parts[1:])


def _walk(
    top: str,
    directory: str,
    parents: tuple[str, ...],
    excludes: _Excludes,
    ancestors: frozenset[str],
) -> Iterator[Path]:
    try:
        with os.scandir(directory) as scan:
            entries = sorted(scan, key=lambda entry: entry.name)
    except OSError as exc:
        shown = "/".join(parents) or "."
        raise ConfigurationError(
            f"Cannot list directory {shown!r} of the project: {exc.strerror}. "
            "Fix its permissions or add it to Exclude."
        ) from exc
    for entry in entries:
        if entry.name in ALWAYS_SKIPPED:
            continue
        parts = (*parents, entry.name)
        shown = "/".join(parts)
        try:
            mode: int | None = entry.stat(follow_symlinks=True).st_mode
        except FileNotFoundError:
            mode = None  # dangling link
        is_dir = mode is not None and stat.S_ISDIR(mode)
        if excludes.match(parts, is_dir):
            continue
        if entry.is_symlink():
            target = os.path.realpath(entry.path)
            if target != top and not target.startswith(top + os.sep):
                raise ConfigurationError(
                    f"Symbolic link {shown!r} points outside the project (to {target}); "
                    "replace it by a copy or add it to Exclude."
                )
            if mode is None:
                raise ConfigurationError(
                    f"Symbolic link {shown!r} points to a missing file; remove it or add it "
                    "to Exclude."
                )
        if is_dir:
            real = os.path.realpath(entry.path)
            if real in ancestors:
                raise ConfigurationError(
                    f"Symbolic link {shown!r} makes a loop; remove it or add it to Exclude."
                )
            yield from _walk(top, real, parts, excludes, ancestors | {real})
        elif mode is not None and stat.S_ISREG(mode):
            yield Path(*parts)
        else:
            raise ConfigurationError(
                f"{shown!r} is not a regular file (a socket, FIFO or device); add it to Exclude."
            )


def _zip_info(relative: Path, st: os.stat_result) -> zipfile.ZipInfo:
    t = time.localtime(st.st_mtime)
    # The zip format only holds dates from 1980 to 2107.
    if t.tm_year < 1980:
        date_time = (1980, 1, 1, 0, 0, 0)
    else:
        date_time = (min(t.tm_year, 2107), t.tm_mon, t.tm_mday, t.tm_hour, t.tm_min, t.tm_sec)
    info = zipfile.ZipInfo(relative.as_posix(), date_time=date_time)
    info.compress_type = zipfile.ZIP_DEFLATED
    info.file_size = st.st_size
    # Only the executable bit is worth carrying; the server normalises modes anyway.
    info.external_attr = (stat.S_IFREG | (0o755 if st.st_mode & 0o111 else 0o644)) << 16
    return info
