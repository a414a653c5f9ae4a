"""Offline tracking on sites the platform reads only during a request: what the job wrote,
fetched through the site's file access (UNICORE's file API, SFTP over SSH).

A job folder on such a site is readable only with the user's credentials, which the
platform holds during a request. While a request holds them, :class:`OfflineMirror` copies
the files the offline sync reads into the platform's own folder for the job —
``tracking``, ``exit-code``, ``offline/snapshot.db`` and ``offline/artifacts/**`` (and the
job log once the job ended) — each only when its size or modification time changed, and
with the site's modification time, so that the sync's marks (snapshot and artifacts by
size and mtime) work on the copy as they do on a shared filesystem.

The snapshot grows with everything the job logged, but changes little between two
snapshots: when the node published block digests next to it (``snapshot.db.blocks``, see
``node/offline_snapshot.py``) and the mirror holds an earlier copy with its digests, only
the changed blocks are fetched (ranges, each block checked against its digest); otherwise,
or when anything does not match, the whole file.

Names come from the site's listing: each must be one plain path component (no ``..``, no
slash) and land inside the mirror; files are written under a temporary name and renamed.
A site's access is a :class:`RemoteFolder`, paths relative to the job's folder.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Protocol

from mantik.server.compute.job_folder import (
    ARTIFACTS,
    BLOCKS,
    EXIT_CODE,
    MANTIK,
    OFFLINE,
    SNAPSHOT,
    TRACKING_MODE,
    is_log_file,
)
from mantik.server.compute.offline.block_digests import (
    MAX_MANIFEST_BYTES,
    BlockDigestsError,
    Manifest,
    block_digest,
)

SMALL_FILES = (TRACKING_MODE, EXIT_CODE)
PARTIAL = ".partial"  # in the mirror: downloads in progress
PARALLEL_RANGES = 4
SETTLE_SECONDS = 2.0  # an artifact changed this recently is fetched next time
# Bounds against a job that plants a huge tree in its artifact folder.
MAX_DEPTH = 32
MAX_FILES = 100_000


class MirrorError(Exception):
    """The site's answer cannot be mirrored safely (the message says why)."""


class Stale(Exception):
    """Fetched blocks do not match the digests: the node published meanwhile."""


@dataclass(frozen=True)
class RemoteFile:
    name: str
    is_dir: bool
    size: int
    mtime: float | None  # seconds since the epoch; None when the site did not say


class RemoteFolder(Protocol):
    """A job's folder on a site, paths relative to it (``.mantik/...``)."""

    def list(self, folder: str) -> dict[str, RemoteFile]:
        """The entries directly inside ``folder`` by name ({} if it does not exist yet);
        only names that are one plain path component."""

    def read(self, path: str) -> Iterator[bytes]:
        """The whole file, in chunks (one open: a file renamed meanwhile is read whole)."""

    def read_range(self, path: str, offset: int, size: int) -> bytes:
        """``size`` bytes at ``offset``; raises :class:`Stale` if the site cannot."""


class OfflineMirror:
    """Copies one job's offline files from its folder on the site to ``target``."""

    def __init__(self, folder: RemoteFolder, target: Path) -> None:
        self.folder = folder
        self.target = target
        self.files = 0
        self.bytes = 0  # fetched by this mirror, for the log and the benchmark
        self.listed = 0

    def run(self, *, final: bool) -> Path:
        """Bring ``target`` up to date; ``final``: the job ended (also fetch its log, and
        re-read a snapshot that may have been replaced within the same second)."""
        self.target.mkdir(mode=0o700, parents=True, exist_ok=True)
        shutil.rmtree(self.target / PARTIAL, ignore_errors=True)  # left by a crash
        top = self._list(MANTIK)
        logs = tuple(sorted(name for name in top if is_log_file(name))) if final else ()
        for name in SMALL_FILES + logs:
            if name in top and not top[name].is_dir:
                self._fetch(f"{MANTIK}/{name}", top[name], force=final)
        if self._mode() != "offline":
            return self.target
        folder = f"{MANTIK}/{OFFLINE}"
        offline = self._list(folder)
        snapshot = offline.get(SNAPSHOT)
        if snapshot is not None and not snapshot.is_dir:
            self._snapshot(folder, snapshot, offline.get(BLOCKS), force=final)
        if ARTIFACTS in offline and offline[ARTIFACTS].is_dir:
            self._tree(f"{folder}/{ARTIFACTS}", depth=0, final=final)
        return self.target

    def _mode(self) -> str:
        with contextlib.suppress(OSError):
            return (self.target / TRACKING_MODE).read_text(errors="replace").strip()
        return ""

    def _list(self, folder: str) -> dict[str, RemoteFile]:
        return self.folder.list(folder)

    def _tree(self, folder: str, depth: int, *, final: bool) -> None:
        if depth > MAX_DEPTH:
            raise MirrorError(f"{folder} nests deeper than {MAX_DEPTH} folders")
        entries = self._list(folder)
        self.listed += len(entries)
        if self.listed > MAX_FILES:
            raise MirrorError(f"the job's artifact folder holds more than {MAX_FILES} files")
        for name, entry in sorted(entries.items()):
            if entry.is_dir:
                self._tree(f"{folder}/{name}", depth + 1, final=final)
            elif final or not _settling(entry):  # a file still being written: next time
                self._fetch(f"{folder}/{name}", entry, force=False)

    def _local(self, remote: str) -> Path:
        relative = PurePosixPath(remote).relative_to(MANTIK)
        local = self.target.joinpath(*relative.parts)
        # The mirror is the platform's own folder (no symlinks in it); check anyway.
        if not os.path.realpath(local).startswith(os.path.realpath(self.target) + os.sep):
            raise MirrorError(f"{remote} leaves the job's folder")
        return local

    def _fetch(self, remote: str, entry: RemoteFile, *, force: bool) -> None:
        local = self._local(remote)
        if not force and entry.mtime is not None and _same(local, entry):
            return
        self.files += 1
        local.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        # Downloads land beside the mirrored folders: a partial file left by a crash is
        # never taken for an artifact.
        scratch = self.target / PARTIAL
        scratch.mkdir(mode=0o700, exist_ok=True)
        handle, partial = tempfile.mkstemp(prefix=f"{local.name[:64]}.", dir=scratch)
        try:
            with os.fdopen(handle, "wb") as out:
                for chunk in self._download(remote):
                    out.write(chunk)
                    self.bytes += len(chunk)
            if entry.mtime is not None:
                os.utime(partial, (entry.mtime, entry.mtime))
            os.replace(partial, local)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(partial)
            raise

    def _snapshot(
        self, folder: str, entry: RemoteFile, blocks: RemoteFile | None, *, force: bool
    ) -> None:
        """The snapshot: its changed blocks when both sides have digests, else all of it."""
        remote = f"{folder}/{SNAPSHOT}"
        local = self._local(remote)
        if not force and entry.mtime is not None and _same(local, entry):
            return
        kept = self._local(f"{folder}/{BLOCKS}")  # the digests of the copy held here
        old = Manifest.read(kept) if local.is_file() else None
        usable = blocks is not None and blocks.size <= MAX_MANIFEST_BYTES
        if usable and old is not None and old.size == local.stat().st_size:
            kept.unlink()  # the copy is about to change: no digests until it matches again
            try:
                data = b"".join(self._download(f"{folder}/{BLOCKS}"))
                self.bytes += len(data)
                self._patch(remote, local, old, Manifest.parse(data), entry)
            except (Stale, BlockDigestsError):
                pass  # published meanwhile, or unusable digests: fetch the snapshot whole
            else:
                kept.write_bytes(data)
                return
        kept.unlink(missing_ok=True)
        self._fetch(remote, entry, force=True)
        if blocks is not None:  # the node publishes digests: keep ours for the next time
            kept.write_bytes(Manifest.of_file(local).serialize())

    def _patch(
        self, remote: str, local: Path, old: Manifest, new: Manifest, entry: RemoteFile
    ) -> None:
        """Bring ``local`` (which matches ``old``) to ``new``, fetching the changed blocks
        (a few range requests at a time: each is a round trip to the site)."""
        with local.open("r+b") as handle:
            handle.truncate(new.size)
            descriptor = handle.fileno()

            def fetch(span: tuple[int, int]) -> int:
                start, end = span
                data = self._range(remote, start, end - start)
                for offset in range(0, len(data), new.block):
                    block = data[offset : offset + new.block]
                    if block_digest(block) != new.digest((start + offset) // new.block):
                        raise Stale
                os.pwrite(descriptor, data, start)
                return len(data)

            with ThreadPoolExecutor(PARALLEL_RANGES, thread_name_prefix="mantik-fetch") as pool:
                self.bytes += sum(pool.map(fetch, new.changed_ranges(old)))
        self.files += 1
        if entry.mtime is not None:
            os.utime(local, (entry.mtime, entry.mtime))

    def _range(self, remote: str, offset: int, size: int) -> bytes:
        data = self.folder.read_range(remote, offset, size)
        if len(data) != size:
            raise Stale
        return data

    def _download(self, remote: str) -> Iterator[bytes]:
        return self.folder.read(remote)


def _settling(entry: RemoteFile) -> bool:
    """Changed so recently that it may still grow (as the sync waits before uploading)."""
    return entry.mtime is not None and time.time() - entry.mtime < SETTLE_SECONDS


def _same(local: Path, entry: RemoteFile) -> bool:
    try:
        info = local.stat()
    except OSError:
        return False
    return info.st_size == entry.size and int(info.st_mtime) == int(entry.mtime or -1)
