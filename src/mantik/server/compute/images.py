"""Content-addressed Apptainer images: one cache folder per site, one file per sha256.

An upload is streamed to a temporary file inside the cache folder while it is hashed, in
blocks of a few MiB, so memory does not grow with the image. Only when the digest matches
the one the client named is the file renamed to ``<sha256>.sif`` (atomic on one
filesystem): a broken, partial or altered upload never becomes a cache entry. The cache is
kept under its size limit by evicting the least recently used images (``mtime`` is bumped
on every use), never one that a job still waiting or running needs.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hashlib
import os
import re
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from mantik.server.compute.errors import CacheFull, ImageTooLarge, InvalidSubmission
from mantik.server.coordination import Locks

SUFFIX = ".sif"
_DIGEST = re.compile(r"[0-9a-f]{64}")
_BLOCK = 4 * 1024 * 1024  # hashed and written per thread hand-off
_STALE_SECONDS = 3600  # a temporary file nobody wrote to for this long is a dead upload


def check_digest(value: str) -> str:
    if not _DIGEST.fullmatch(value):
        raise InvalidSubmission(
            f"{value[:80]!r} is not a sha256 digest (64 lower-case hexadecimal digits)."
        )
    return value


def too_large(limit: int, setting: str) -> ImageTooLarge:
    return ImageTooLarge(
        f"The image is larger than this platform accepts ({limit} bytes, {setting}). Copy it "
        "to the site yourself and set RemoteImage to its path there, instead of "
        "SingularityImage.",
    )


@dataclass(frozen=True)
class StoredImage:
    digest: str
    path: Path
    size: int


class _Upload:
    """One image being received: a temporary file and the running hash (blocking calls)."""

    def __init__(self, folder: Path) -> None:
        self.path = folder / f"{uuid.uuid4().hex}.part"
        self._file = self.path.open("xb")
        self._hash = hashlib.sha256()
        self.size = 0

    def write(self, chunks: list[bytes]) -> None:
        try:
            for chunk in chunks:
                self._hash.update(chunk)
                self.size += len(chunk)
                # All-zero chunks become holes, as with `cp --sparse`: sparse images (and the
                # zero padding of real ones) take no disk space in the cache. (lstrip costs
                # nothing for a chunk that starts with data: it returns the chunk itself.)
                if chunk.lstrip(b"\0"):
                    self._file.write(chunk)
                else:
                    self._file.seek(len(chunk), os.SEEK_CUR)
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise CacheFull(
                    "The platform's image cache has no disk space left. Try again later, ask "
                    "the platform admin, or copy the image to the site and set RemoteImage.",
                ) from exc
            raise

    def finish(self) -> str:
        """Close the file (with its full length, trailing hole included); the digest."""
        self._file.truncate(self.size)
        self._file.close()
        return self._hash.hexdigest()

    def abort(self) -> None:
        self._file.close()
        self.path.unlink(missing_ok=True)


class ImageCache:
    """The images held for one site. ``in_use`` returns the digests of unfinished jobs."""

    def __init__(
        self, root: Path, limit: int, in_use: Callable[[], set[str]], locks: Locks
    ) -> None:
        self.root = root
        self._locks = locks
        self.limit = limit
        self._in_use = in_use
        self._incoming = root / ".incoming"

    def path(self, digest: str) -> Path:
        return self.root / f"{check_digest(digest)}{SUFFIX}"

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """Across workers and replicas: no image is evicted between being found and being
        touched."""
        if not self.root.is_dir():
            self.root.mkdir(parents=True, exist_ok=True)
            self.root.chmod(0o711)  # jobs under their accounts open images by name, list none
        with self._locks.hold(f"images:{self.root}"):
            yield

    def use(self, digest: str) -> Path | None:
        """The cached image, marked as just used; None when it is not held."""
        path = self.path(digest)
        with self._locked():
            try:
                os.utime(path)
            except FileNotFoundError:
                return None
        return path

    def admit(self, size: int, max_bytes: int) -> None:
        """Refuse an upload whose declared size is over the limits, before reading it."""
        limit, setting = self._limit(max_bytes)
        if size > limit:
            raise too_large(limit, setting)

    def _limit(self, max_bytes: int) -> tuple[int, str]:
        return min((max_bytes, "max_image_bytes"), (self.limit, "image_cache_bytes"))

    async def receive(
        self, digest: str, chunks: AsyncIterator[bytes], max_bytes: int
    ) -> StoredImage:
        """Store the streamed image if its sha256 is ``digest``; else keep nothing."""
        check_digest(digest)
        limit, setting = self._limit(max_bytes)
        upload = await asyncio.to_thread(self._begin)
        pending: asyncio.Future[None] | None = None
        block: list[bytes] = []  # chunks as the server received them: no copies
        size = received = 0
        try:
            async for chunk in chunks:
                received += len(chunk)
                if received > limit:
                    raise too_large(limit, setting)
                block.append(chunk)
                size += len(chunk)
                if size >= _BLOCK:
                    # Hash and write the previous block in a thread while this one fills.
                    if pending is not None:
                        await pending
                    pending = asyncio.ensure_future(asyncio.to_thread(upload.write, block))
                    block, size = [], 0
            if pending is not None:
                await pending
                pending = None
            if block:
                await asyncio.to_thread(upload.write, block)
            return await asyncio.to_thread(self._commit, upload, digest)
        except BaseException:
            if pending is not None:
                await asyncio.wait([pending])  # the thread must be done with the file
            upload.abort()
            raise

    def _begin(self) -> _Upload:
        self._incoming.mkdir(parents=True, exist_ok=True)
        stale = time.time() - _STALE_SECONDS
        for leftover in self._incoming.glob("*.part"):  # from a worker that was killed
            with contextlib.suppress(FileNotFoundError):
                if leftover.stat().st_mtime < stale:
                    leftover.unlink()
        return _Upload(self._incoming)

    def _commit(self, upload: _Upload, digest: str) -> StoredImage:
        actual = upload.finish()
        if actual != digest:
            upload.abort()
            raise InvalidSubmission(
                f"The uploaded image has sha256 {actual}, not {digest}: it was changed or "
                "damaged on the way. Nothing was stored; send it again.",
            )
        target = self.path(digest)
        upload.path.chmod(0o644)  # jobs read it, possibly as another process
        with self._locked():
            os.replace(upload.path, target)
        self.evict(keep=digest)
        return StoredImage(digest, target, upload.size)

    def entries(self) -> list[tuple[int, int, str]]:
        """(last use in ns, size, digest) of every held image, least recently used first."""
        found = []
        for path in self.root.glob(f"*{SUFFIX}"):
            with contextlib.suppress(FileNotFoundError):
                info = path.stat()
                found.append((info.st_mtime_ns, info.st_size, path.stem))
        return sorted(found)

    def evict(self, keep: str | None = None) -> list[str]:
        """Remove least recently used images until the cache fits its limit; the digests.

        Sizes are apparent sizes (holes count), so the limit holds whatever the filesystem.
        A submission marks its image as used before its job is recorded: in that short
        window only being the most recently used protects it, which suffices unless every
        other image is in use too.
        """
        evicted: list[str] = []
        with self._locked():
            entries = self.entries()
            total = sum(size for _, size, _ in entries)
            if total <= self.limit:
                return evicted
            busy = self._in_use()
            for _, size, digest in entries:
                if total <= self.limit:
                    break
                if digest == keep or digest in busy:
                    continue
                (self.root / f"{digest}{SUFFIX}").unlink(missing_ok=True)
                total -= size
                evicted.append(digest)
        return evicted
