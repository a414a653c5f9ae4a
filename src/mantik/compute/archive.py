"""Project archives: a streaming zip on the client, a distrustful unzip on the server.

The client zips the project file by file in 1 MiB chunks, so a project with multi-GB data
never sits in memory. The server unpacks what users upload: every field an attacker controls
(names, modes, declared sizes, offsets) is checked before a byte is written, and the bytes
actually written are counted, since declared sizes can lie.
"""

from __future__ import annotations

import fnmatch
import itertools
import os
import re
import shutil
import stat
import tempfile
import time
import zipfile
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Final

from mantik._exceptions import ConfigurationError

ALWAYS_SKIPPED: Final = frozenset({".git", "__pycache__", "mlruns", ".mantik"})
_CHUNK: Final = 1024 * 1024
_ZIP64_FROM: Final = 1024**3  # zipfile refuses to grow a member past 2 GiB without zip64
_RATIO_FROM: Final = 1024**2  # small members cannot be bombs, whatever their ratio
_LOCAL_HEADER_SIZE: Final = 30
_MAX_ENTRY_SIZE: Final = 512  # central directory bytes per member: 46 + name + extras
_END: Final = b"PK\x05\x06"
_END_SIZE: Final = 22
_END64: Final = b"PK\x06\x06"
_END64_LOCATOR: Final = b"PK\x06\x07"
_METHODS: Final = {zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA}
_DRIVE: Final = re.compile(r"^[A-Za-z]:")


@dataclass(frozen=True)
class ZipSummary:
    """What :func:`write_project_zip` stored: number of files and their total size."""

    files: int
    bytes_in: int


class UnsafeArchive(ValueError):
    """An uploaded archive was refused; the message names the member and the reason."""


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
                    while chunk := source.read(_CHUNK):
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


def safe_extract(
    zip_path: Path,
    dest: Path,
    *,
    max_files: int = 20_000,
    max_bytes: int = 10 * 1024**3,
    max_ratio: int = 200,
) -> int:
    """Unpack an untrusted zip into ``dest`` (missing or empty); return the file count.

    Refuses, with :class:`UnsafeArchive`, absolute or escaping names, drive letters and
    backslashes, links, devices, duplicates, overlapping members, encryption, and archives
    over the limits (members, total size, compression ratio of large members). Files get
    mode 0644, or 0755 when executable. On refusal ``dest`` is left empty.
    """
    with zip_path.open("rb") as stream:
        _check_directory_size(stream, zip_path.name, max_files)
        try:
            archive = zipfile.ZipFile(stream)
        except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, NotImplementedError) as exc:
            raise UnsafeArchive(f"{zip_path.name} is not a readable zip archive: {exc}") from exc
        with archive:
            plan = _plan(archive, max_files=max_files, max_bytes=max_bytes, max_ratio=max_ratio)
            dest.mkdir(parents=True, exist_ok=True)
            if any(dest.iterdir()):
                raise ValueError(f"Extraction directory {dest} must be empty.")
            try:
                return _extract(archive, plan, dest, max_bytes)
            except BaseException:
                _empty(dest)
                raise


# -- client: walking and zipping ----------------------------------------------------------


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


# -- server: checking and extracting ------------------------------------------------------


@dataclass(frozen=True)
class _Member:
    info: zipfile.ZipInfo
    parts: tuple[str, ...]
    is_dir: bool
    mode: int


def _plan(
    archive: zipfile.ZipFile, *, max_files: int, max_bytes: int, max_ratio: int
) -> list[_Member]:
    infos = archive.infolist()
    if len(infos) > max_files:
        raise UnsafeArchive(f"archive has {len(infos)} members, more than the limit of {max_files}")
    plan: list[_Member] = []
    seen: dict[tuple[str, ...], _Member] = {}
    declared = 0
    for info in infos:
        member = _check_member(info, max_ratio)
        if member.parts in seen:
            raise UnsafeArchive(f"member {info.filename!r} appears twice in the archive")
        seen[member.parts] = member
        plan.append(member)
        declared += info.file_size
        if declared > max_bytes:
            raise UnsafeArchive(
                f"archive expands to more than {max_bytes} bytes (limit reached at member "
                f"{info.filename!r})"
            )
    for member in plan:
        for i in range(1, len(member.parts)):
            parent = seen.get(member.parts[:i])
            if parent is not None and not parent.is_dir:
                raise UnsafeArchive(
                    f"member {member.info.filename!r} lies under {parent.info.filename!r}, "
                    "which is a file"
                )
    _check_overlaps(infos)
    return plan


def _check_directory_size(stream: BinaryIO, name: str, max_files: int) -> None:
    """Refuse a central directory too big for ``max_files`` members *before* zipfile parses
    it: zipfile builds an object per entry, whatever the entry count the archive declares.
    """
    # Locate the directory exactly as zipfile does: end record without comment, else the
    # last signature in the final 64 KiB; a zip64 record just before it takes precedence.
    end = stream.seek(0, os.SEEK_END)
    start = max(0, end - _END_SIZE - (1 << 16))
    stream.seek(start)
    tail = stream.read()
    at = len(tail) - _END_SIZE
    if not (at >= 0 and tail[at : at + 4] == _END and tail[-2:] == b"\0\0"):
        at = tail.rfind(_END)
    if at < 0 or at + _END_SIZE > len(tail):
        return  # not a zip: zipfile says so
    size = int.from_bytes(tail[at + 12 : at + 16], "little")
    located = start + at
    if located >= 76:
        stream.seek(located - 76)
        record, locator = stream.read(56), stream.read(20)
        if locator[:4] == _END64_LOCATOR and record[:4] == _END64:
            size = int.from_bytes(record[40:48], "little")
    if size > max_files * _MAX_ENTRY_SIZE:
        raise UnsafeArchive(
            f"{name} has a {size}-byte central directory, too big for {max_files} members"
        )


def _check_member(info: zipfile.ZipInfo, max_ratio: int) -> _Member:
    name = info.filename
    parts = _safe_parts(name)
    unix_mode = info.external_attr >> 16
    kind = stat.S_IFMT(unix_mode)
    if kind == stat.S_IFLNK:
        raise UnsafeArchive(f"member {name!r} is a symbolic link")
    if kind not in (0, stat.S_IFREG, stat.S_IFDIR):
        raise UnsafeArchive(f"member {name!r} is a device, FIFO or socket")
    if info.flag_bits & 0x1:
        raise UnsafeArchive(f"member {name!r} is encrypted")
    if info.compress_type not in _METHODS:
        raise UnsafeArchive(f"member {name!r} uses unsupported compression {info.compress_type}")
    is_dir = name.endswith("/") or kind == stat.S_IFDIR
    if is_dir:
        return _Member(info, parts, is_dir=True, mode=0o755)
    if info.file_size > _RATIO_FROM and info.file_size > max_ratio * max(info.compress_size, 1):
        ratio = info.file_size // max(info.compress_size, 1)
        raise UnsafeArchive(
            f"member {name!r} has a compression ratio of {ratio}:1, over the limit of "
            f"{max_ratio}:1 (a zip bomb?)"
        )
    return _Member(info, parts, is_dir=False, mode=0o755 if unix_mode & 0o111 else 0o644)


def _safe_parts(name: str) -> tuple[str, ...]:
    if any(ord(char) < 0x20 or char == "\x7f" for char in name):
        raise UnsafeArchive(f"member {name!r} has control characters in its name")
    if "\\" in name:
        raise UnsafeArchive(f"member {name!r} has a backslash in its name (a Windows path?)")
    if name.startswith("/"):
        raise UnsafeArchive(f"member {name!r} has an absolute path")
    parts = tuple(part for part in name.split("/") if part not in ("", "."))
    if not parts:
        raise UnsafeArchive(f"member {name!r} has an empty name")
    if ".." in parts:
        raise UnsafeArchive(f"member {name!r} leaves the extraction directory ('..')")
    if _DRIVE.match(parts[0]):
        raise UnsafeArchive(f"member {name!r} starts with a drive letter")
    return parts


def _check_overlaps(infos: Sequence[zipfile.ZipInfo]) -> None:
    # Members sharing compressed data ("overlapping" zip bombs) multiply the output
    # without raising any single member's ratio.
    ordered = sorted(infos, key=lambda info: info.header_offset)
    for this, following in itertools.pairwise(ordered):
        encoding = "utf-8" if this.flag_bits & 0x800 else "cp437"
        name_size = len(this.orig_filename.encode(encoding, errors="replace"))
        end = this.header_offset + _LOCAL_HEADER_SIZE + name_size
        if end + this.compress_size > following.header_offset:
            raise UnsafeArchive(f"member {following.filename!r} overlaps member {this.filename!r}")


def _extract(archive: zipfile.ZipFile, plan: list[_Member], dest: Path, max_bytes: int) -> int:
    written = files = 0
    for member in plan:
        target = dest.joinpath(*member.parts)
        name = member.info.filename
        try:
            if member.is_dir:
                target.mkdir(mode=0o755, parents=True, exist_ok=True)
                continue
            target.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
            # O_EXCL | O_NOFOLLOW: never overwrite, never write through a link.
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
            fd = os.open(target, flags, 0o600)
        except (FileExistsError, NotADirectoryError, IsADirectoryError) as exc:
            raise UnsafeArchive(f"member {name!r} clashes with another member: {exc}") from exc
        with os.fdopen(fd, "wb") as out:
            size = 0
            try:
                with archive.open(member.info) as source:
                    while chunk := source.read(_CHUNK):
                        size += len(chunk)
                        written += len(chunk)
                        if size > member.info.file_size:
                            raise UnsafeArchive(f"member {name!r} is larger than it declares")
                        if written > max_bytes:
                            raise UnsafeArchive(
                                f"archive expands to more than {max_bytes} bytes "
                                f"(limit reached at member {name!r})"
                            )
                        out.write(chunk)
            except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError) as exc:
                raise UnsafeArchive(f"member {name!r} is corrupt: {exc}") from exc
            os.fchmod(out.fileno(), member.mode)  # exact mode whatever the umask; no setuid
        files += 1
    return files


def _empty(directory: Path) -> None:
    for child in directory.iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()
