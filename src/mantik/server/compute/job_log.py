"""A job's log as the wrapper keeps it, and reading it back by byte offset.

The wrapper keeps the first bytes of the job's output in ``job.log`` (``head`` bytes) and the
rest in parts of a fixed size, ``job.log.tail.<part bytes>.<index>`` (from 1), of which it
keeps the newest two (see :mod:`mantik.server.compute.drivers.log_capture`). A part's name
says where it lies in the whole output: byte ``k`` of part ``index`` is byte
``head + (index - 1) * part_bytes + k`` of what the job printed. Every byte keeps that offset for
good, so a reader follows the live log by offset however long it grows; what was dropped
reads as one marker line.

The files are read through :class:`LogFiles` (the platform's filesystem, UNICORE's file
API, SFTP), in pieces: a response streams, and never holds a whole log.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from mantik.server.compute.job_folder import LOG, LOG_TAIL, MANTIK
from mantik.server.compute.offline.files import UnsafePath, checked_dir
from mantik.server.compute.offline.mirror import RemoteFile

_PART = re.compile(re.escape(LOG_TAIL) + r"(\d+)\.(\d+)")
CHUNK = 256 * 1024  # small: 16 readers hold 4 MiB, and glibc keeps little of it


class LogFiles(Protocol):
    """A job's folder as the log is read from it (the offline mirror's LogFiles is one)."""

    def list(self, folder: str) -> dict[str, RemoteFile]: ...

    def read_range(self, path: str, offset: int, size: int) -> bytes: ...


def marker(dropped: int) -> bytes:
    """The line that stands for ``dropped`` bytes of output the log no longer holds (the
    wrapper writes the same line into the log it uploads)."""
    return f"\n[mantik: {dropped} bytes of output left out here]\n".encode()


def _join(folder: str, name: str) -> str:
    return f"{folder.rstrip('/')}/{name}".lstrip("/")


@dataclass(frozen=True)
class Window:
    """Which bytes of the log a reader asks for: by default all that is kept; ``tail_bytes``:
    the last ones; ``offset`` (and ``length``): from there (on)."""

    tail_bytes: int | None = None
    offset: int | None = None
    length: int | None = None


KEPT = Window()  # all the log keeps


@dataclass(frozen=True)
class _Piece:
    path: str | None  # None: a marker for ``length`` dropped bytes
    offset: int
    length: int


@dataclass(frozen=True)
class Layout:
    """Where the log's bytes are: the head file, then the parts kept (by index)."""

    head_path: str
    head: int
    part_bytes: int = 0
    parts: tuple[tuple[int, int, str], ...] = ()  # (index, size, path), oldest first

    @classmethod
    def of(
        cls, listing: Mapping[str, RemoteFile], folder: str = MANTIK, head_name: str = LOG
    ) -> Layout | None:
        """The log in ``folder``'s listing; None if the job wrote none (yet)."""
        head = listing.get(head_name)
        if head is None or head.is_dir:
            return None
        found = []
        for name, entry in listing.items():
            match = _PART.fullmatch(name)
            if match and not entry.is_dir and int(match[1]) > 0 and int(match[2]) > 0:
                found.append((int(match[1]), int(match[2]), entry.size, _join(folder, name)))
        part_bytes = found[0][0] if found else 0
        parts = sorted(part[1:] for part in found if part[0] == part_bytes)
        return cls(_join(folder, head_name), head.size, part_bytes, tuple(parts))

    def _start(self, index: int) -> int:
        return self.head + (index - 1) * self.part_bytes

    @property
    def size(self) -> int:
        """Bytes the job printed so far (kept or not)."""
        if not self.parts:
            return self.head
        index, size, _ = self.parts[-1]
        return self._start(index) + size

    @property
    def kept_from(self) -> int:
        """The offset of the first byte after the head that is still kept."""
        return self._start(self.parts[0][0]) if self.parts else self.head

    def span(self, window: Window) -> tuple[int, int]:
        """The offsets [start, end) that ``window`` asks for, within what was printed."""
        size = self.size
        if window.tail_bytes is not None:
            return max(0, size - window.tail_bytes), size
        start = min(window.offset or 0, size)
        end = size if window.length is None else min(size, start + window.length)
        return start, end

    def pieces(self, start: int, end: int) -> list[_Piece]:
        """The reads (and the marker) that give bytes [start, end)."""
        pieces = []
        if start < self.head:
            pieces.append(_Piece(self.head_path, start, min(end, self.head) - start))
        gap_from, gap_to = max(start, self.head), min(end, self.kept_from)
        if gap_to > gap_from:
            pieces.append(_Piece(None, 0, gap_to - gap_from))
        for index, size, path in self.parts:
            first = self._start(index)
            lo, hi = max(start, first), min(end, first + size)
            if hi > lo:
                pieces.append(_Piece(path, lo - first, hi - lo))
        return pieces


@dataclass
class JobLog:
    """An answer to a log request: the span served, and its bytes as they are read."""

    found: bool = False  # whether the job wrote a log (yet)
    size: int = 0  # bytes the job printed so far
    dropped: int = 0  # of them, no longer kept
    start: int = 0
    end: int = 0  # the offset to ask for next
    chunks: Iterator[bytes] = field(default_factory=lambda: iter(()))

    def text(self) -> str:
        """All of it as text (for logs known to be small, and tests)."""
        return b"".join(self.chunks).decode(errors="replace")


def _stream(folder: LogFiles, pieces: list[_Piece]) -> Iterator[bytes]:
    for piece in pieces:
        if piece.path is None:
            yield marker(piece.length)
            continue
        done = 0
        while done < piece.length:
            want = min(CHUNK, piece.length - done)
            try:
                data = folder.read_range(piece.path, piece.offset + done, want)
            except Exception:  # e.g. a part the wrapper dropped since it was listed
                yield marker(piece.length - done)
                break
            if not data:  # shorter than listed: the file was replaced
                break
            done += len(data)
            yield data


def read(
    folder: LogFiles,
    window: Window,
    *,
    log_folder: str = MANTIK,
    head_name: str = LOG,
    on_close: Callable[[], None] | None = None,
) -> JobLog:
    """The part of the log in ``log_folder`` (its head: ``head_name``) that ``window`` asks
    for; ``on_close`` runs
    when the answer is read (or dropped), e.g. to end the session it reads over."""
    layout = Layout.of(folder.list(log_folder), log_folder, head_name)
    if layout is None:
        if on_close is not None:
            on_close()
        return JobLog()
    start, end = layout.span(window)

    def chunks() -> Iterator[bytes]:
        try:
            yield from _stream(folder, layout.pieces(start, end))
        finally:
            if on_close is not None:
                on_close()

    return JobLog(True, layout.size, layout.kept_from - layout.head, start, end, chunks())


class LocalFolder:
    """A job folder on the platform's filesystem, read as the job's: never through a
    symlink the job planted, nothing outside it."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def list(self, folder: str) -> dict[str, RemoteFile]:
        try:
            path = checked_dir(self.root / folder, self.root)
            entries = list(os.scandir(path))
        except (OSError, UnsafePath):
            return {}
        found = {}
        for entry in entries:
            try:
                info = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            if stat.S_ISREG(info.st_mode):
                found[entry.name] = RemoteFile(entry.name, False, info.st_size, info.st_mtime)
        return found

    def read_range(self, path: str, offset: int, size: int) -> bytes:
        full = self.root / path
        try:
            checked_dir(full.parent, self.root)
            descriptor = os.open(full, os.O_RDONLY | os.O_NOFOLLOW)
        except UnsafePath as exc:
            raise FileNotFoundError(path) from exc
        except OSError as exc:  # a symlink (ELOOP) is as good as absent
            raise FileNotFoundError(path) from exc
        with os.fdopen(descriptor, "rb") as handle:
            if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
                raise FileNotFoundError(path)
            return os.pread(handle.fileno(), size, offset)
