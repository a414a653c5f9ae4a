"""A job's folder on an SSH site as the offline mirror reads it (SFTP, as the user)."""

from __future__ import annotations

import stat
import threading
from collections.abc import Iterator

import paramiko

from mantik.server.compute.offline.mirror import RemoteFile

_CHUNK = 1024 * 1024


class SftpFolder:
    """One SFTP session serves one request at a time (the mirror fetches ranges from
    several threads; paramiko's client mixes up concurrent answers): a lock orders them."""

    def __init__(self, sftp: paramiko.SFTPClient, root: str) -> None:
        self.sftp = sftp
        self.root = root.rstrip("/")
        self._lock = threading.Lock()

    def list(self, folder: str) -> dict[str, RemoteFile]:
        try:
            with self._lock:
                entries = self.sftp.listdir_attr(f"{self.root}/{folder}")
        except FileNotFoundError:
            return {}  # not written yet
        found = {}
        for entry in entries:
            name, mode = entry.filename, entry.st_mode or 0
            if name in ("", ".", "..") or "/" in name or "\0" in name:
                continue
            if not (stat.S_ISDIR(mode) or stat.S_ISREG(mode)):  # symlinks and the like
                continue
            mtime = float(entry.st_mtime) if entry.st_mtime is not None else None
            found[name] = RemoteFile(name, stat.S_ISDIR(mode), entry.st_size or 0, mtime)
        return found

    def read(self, path: str) -> Iterator[bytes]:
        with self._lock, self.sftp.open(f"{self.root}/{path}", "rb") as handle:
            handle.prefetch()
            while chunk := handle.read(_CHUNK):
                yield chunk

    def read_range(self, path: str, offset: int, size: int) -> bytes:
        with self._lock, self.sftp.open(f"{self.root}/{path}", "rb") as handle:
            handle.seek(offset)
            data: bytes = handle.read(size)
        return data
