"""Unpacking an uploaded project without trusting it: names, modes, declared sizes and
offsets are checked before a byte is written, and the bytes written are counted."""

from __future__ import annotations

import errno
import itertools
import lzma
import os
import re
import shutil
import stat
import struct
import zipfile
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Final

from mantik._bounded import shown
from mantik.compute.archive.pack import CHUNK

_RATIO_FROM: Final = 1024**2  # small members cannot be bombs, whatever their ratio


_LOCAL_HEADER_SIZE: Final = 30


_MAX_ENTRY_SIZE: Final = 512  # central directory bytes per member: 46 + name + extras


_END: Final = b"PK\x05\x06"


_END_SIZE: Final = 22


_END64: Final = b"PK\x06\x06"


_END64_LOCATOR: Final = b"PK\x06\x07"


_METHODS: Final = {zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA}


_DRIVE: Final = re.compile(r"^[A-Za-z]:")


_MAX_PART: Final = 255  # bytes of one name component (NAME_MAX of Linux filesystems)


# Bytes of a whole member name: well under PATH_MAX (4096), which must also hold the job
# folder's own path on the site.
_MAX_NAME: Final = 3072


# What reading a damaged member raises: zipfile's own errors, the decompressors' (bz2
# raises OSError, lzma LZMAError, a short LZMA header struct.error), a bad local header.
_CORRUPT: Final = (
    zipfile.BadZipFile,
    zlib.error,
    lzma.LZMAError,
    struct.error,
    EOFError,
    NotImplementedError,
    ValueError,
    OSError,
)


class UnsafeArchive(ValueError):
    """An uploaded archive was refused; the message names the member and the reason."""


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
    with zip_path.open("rb") as stream, open_archive(stream, zip_path.name, max_files) as archive:
        plan = _plan(archive, max_files=max_files, max_bytes=max_bytes, max_ratio=max_ratio)
        dest.mkdir(parents=True, exist_ok=True)
        if any(dest.iterdir()):
            raise ValueError(f"Extraction directory {dest} must be empty.")
        try:
            return _extract(archive, plan, dest, max_bytes)
        except BaseException:
            _empty(dest)
            raise


def open_archive(stream: BinaryIO, name: str, max_files: int) -> zipfile.ZipFile:
    """A zipfile reading ``stream``, refused with :class:`UnsafeArchive` when it is not a
    zip, has too big a central directory, or names not in their declared encoding."""
    _check_directory_size(stream, name, max_files)
    try:
        return zipfile.ZipFile(stream)
    except UnicodeDecodeError as exc:
        raise UnsafeArchive(
            f"a member name in {name} is not valid UTF-8, though the archive says it is "
            f"(byte {shown(exc.object[exc.start : exc.start + 1])})"
        ) from exc
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, NotImplementedError) as exc:
        raise UnsafeArchive(f"{name} is not a readable zip archive: {exc}") from exc
    except (ValueError, OSError, struct.error) as exc:  # offsets pointing nowhere
        raise UnsafeArchive(f"{name} is not a readable zip archive (damaged)") from exc


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
            raise UnsafeArchive(f"member {shown(info.filename)} appears twice in the archive")
        seen[member.parts] = member
        plan.append(member)
        declared += info.file_size
        if declared > max_bytes:
            raise UnsafeArchive(
                f"archive expands to more than {max_bytes} bytes (limit reached at member "
                f"{shown(info.filename)})"
            )
    for member in plan:
        for i in range(1, len(member.parts)):
            parent = seen.get(member.parts[:i])
            if parent is not None and not parent.is_dir:
                raise UnsafeArchive(
                    f"member {shown(member.info.filename)} lies under "
                    f"{shown(parent.info.filename)}, "
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
    parts = member_parts(info.filename)
    name = shown(info.filename)
    unix_mode = info.external_attr >> 16
    kind = stat.S_IFMT(unix_mode)
    if kind == stat.S_IFLNK:
        raise UnsafeArchive(f"member {name} is a symbolic link")
    if kind not in (0, stat.S_IFREG, stat.S_IFDIR):
        raise UnsafeArchive(f"member {name} is a device, FIFO or socket")
    if info.flag_bits & 0x1:
        raise UnsafeArchive(f"member {name} is encrypted")
    if info.compress_type not in _METHODS:
        raise UnsafeArchive(f"member {name} uses unsupported compression {info.compress_type}")
    is_dir = name.endswith("/") or kind == stat.S_IFDIR
    if is_dir:
        return _Member(info, parts, is_dir=True, mode=0o755)
    if info.file_size > _RATIO_FROM and info.file_size > max_ratio * max(info.compress_size, 1):
        ratio = info.file_size // max(info.compress_size, 1)
        raise UnsafeArchive(
            f"member {name} has a compression ratio of {ratio}:1, over the limit of "
            f"{max_ratio}:1 (a zip bomb?)"
        )
    return _Member(info, parts, is_dir=False, mode=0o755 if unix_mode & 0o111 else 0o644)


def member_parts(full_name: str) -> tuple[str, ...]:
    """The path components of a member name, refused if unsafe to create."""
    name = shown(full_name)
    size = len(full_name.encode("utf-8", "surrogateescape"))
    if size > _MAX_NAME:
        raise UnsafeArchive(f"member {name} has a name {size} bytes long, over {_MAX_NAME}")
    if any(ord(char) < 0x20 or char == "\x7f" for char in full_name):
        raise UnsafeArchive(f"member {name} has control characters in its name")
    if "\\" in full_name:
        raise UnsafeArchive(f"member {name} has a backslash in its name (a Windows path?)")
    if full_name.startswith("/"):
        raise UnsafeArchive(f"member {name} has an absolute path")
    parts = tuple(part for part in full_name.split("/") if part not in ("", "."))
    if not parts:
        raise UnsafeArchive(f"member {name} has an empty name")
    if ".." in parts:
        raise UnsafeArchive(f"member {name} leaves the extraction directory ('..')")
    if _DRIVE.match(parts[0]):
        raise UnsafeArchive(f"member {name} starts with a drive letter")
    for part in parts:
        if len(part.encode("utf-8", "surrogateescape")) > _MAX_PART:
            raise UnsafeArchive(
                f"member {name} has a name part longer than {_MAX_PART} bytes, "
                "more than filesystems store"
            )
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
            raise UnsafeArchive(
                f"member {shown(following.filename)} overlaps member {shown(this.filename)}"
            )


def _extract(archive: zipfile.ZipFile, plan: list[_Member], dest: Path, max_bytes: int) -> int:
    written = files = 0
    for member in plan:
        target = dest.joinpath(*member.parts)
        name = shown(member.info.filename)
        try:
            if member.is_dir:
                target.mkdir(mode=0o755, parents=True, exist_ok=True)
                continue
            target.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
            # O_EXCL | O_NOFOLLOW: never overwrite, never write through a link.
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
            fd = os.open(target, flags, 0o600)
        except (FileExistsError, NotADirectoryError, IsADirectoryError) as exc:
            raise UnsafeArchive(f"member {name} clashes with another member") from exc
        except OSError as exc:
            if exc.errno == errno.ENAMETOOLONG:
                raise UnsafeArchive(f"member {name} has too long a name") from exc
            raise
        with os.fdopen(fd, "wb") as out:
            size = 0
            for chunk in read_chunks(archive, member.info, name):
                size += len(chunk)
                written += len(chunk)
                if size > member.info.file_size:
                    raise UnsafeArchive(f"member {name} is larger than it declares")
                if written > max_bytes:
                    raise UnsafeArchive(
                        f"archive expands to more than {max_bytes} bytes "
                        f"(limit reached at member {name})"
                    )
                out.write(chunk)  # a full disk raises OSError(ENOSPC): the platform's fault
            os.fchmod(out.fileno(), member.mode)  # exact mode whatever the umask; no setuid
        files += 1
    return files


def read_chunks(archive: zipfile.ZipFile, info: zipfile.ZipInfo, name: str) -> Iterator[bytes]:
    """The member's bytes (``name`` quoted for messages); damage found while reading them
    is the archive's fault."""
    try:
        with archive.open(info) as source:
            while chunk := source.read(CHUNK):
                yield chunk
    except _CORRUPT as exc:
        reason = str(exc) if isinstance(exc, zipfile.BadZipFile | zlib.error) else "bad data"
        raise UnsafeArchive(f"member {name} is corrupt: {shown(reason)}") from exc


def _empty(directory: Path) -> None:
    for child in directory.iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()
