"""UNICORE's file API as a :class:`~mantik.server.compute.offline.mirror.RemoteFolder`:
a job's working directory, listed and read with the user's credentials (pyunicore)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from pathlib import PurePosixPath
from typing import Any
from urllib.parse import quote

from pyunicore import client as unicore

from mantik.server.compute.offline.mirror import MirrorError, RemoteFile, Stale


def parse_time(text: Any) -> float | None:
    """UNICORE's ``yyyy-MM-dd'T'HH:mm:ssZ`` (e.g. ``2024-01-01T12:00:00+0100``)."""
    try:
        return datetime.strptime(str(text), "%Y-%m-%dT%H:%M:%S%z").timestamp()
    except ValueError:
        return None


def children(listing: dict[str, Any], folder: str) -> dict[str, RemoteFile]:
    """The entries of a directory listing directly inside ``folder`` (a path from the
    storage root), by name; entries whose names are not one plain component are dropped."""
    prefix = "/" + folder.strip("/")
    found = {}
    for key, meta in (listing.get("content") or {}).items():
        path = PurePosixPath("/" + str(key).lstrip("/"))
        name = path.name
        if str(path.parent) != prefix or name in ("", ".", "..") or "\0" in name:
            continue
        if not isinstance(meta, dict):
            continue
        found[name] = RemoteFile(
            name,
            bool(meta.get("isDirectory")),
            int(meta.get("size") or 0),
            parse_time(meta.get("lastAccessed")),
        )
    return found


class UnicoreFolder:
    """A UNICORE job's working directory (its storage)."""

    def __init__(self, storage: unicore.Storage) -> None:
        self.storage = storage

    def list(self, folder: str) -> dict[str, RemoteFile]:
        try:
            listing = self.storage.contents(folder)
        except Exception as exc:
            if str(exc).startswith("404"):  # not written yet
                return {}
            raise
        return children(listing, folder)

    def _file(self, remote: str) -> unicore.PathFile:
        url = f"{self.storage.resource_url.rstrip('/')}/files/{quote(remote)}"
        return unicore.PathFile(self.storage, url, remote)

    def read_range(self, path: str, offset: int, size: int) -> bytes:
        with self._file(path).raw(offset, size) as response:
            if response.status_code != 206:  # a site that ignores ranges, or a shorter file
                raise Stale
            data: bytes = response.read()
        return data

    def read(self, path: str) -> Iterator[bytes]:
        with self._file(path).raw() as response:
            if response.status_code != 200:  # pyunicore's raw() does not check
                raise MirrorError(f"{response.status_code}: the site refused to send {path}")
            yield from response.iter_bytes(1024 * 1024)
