"""A number that says when any worker last made a change that caches must not outlive.

A cached answer taken before the last change is not used. Replicas on PostgreSQL share a row
of ``mantik_change_stamps`` (one indexed read per lookup), so a change made at one replica
ends what every other replica cached at their next request. On SQLite (one host) a file's
mtime in the data dir does the same for the workers of the host (one ``stat``).
"""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path
from typing import Protocol

from sqlalchemy import Engine, text
from sqlalchemy.exc import SQLAlchemyError


class ChangeStamp(Protocol):
    def read(self) -> int:
        """The current value; -1 when it cannot be read (never equal to a stored one)."""

    def bump(self) -> None: ...


def for_engine(engine: Engine, name: str, file: Path) -> ChangeStamp:
    """The stamp ``name`` in mantik's database on PostgreSQL, else the file."""
    if engine.dialect.name == "postgresql":
        return DatabaseStamp(engine, name)
    return FileStamp(file)


class FileStamp:
    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch(exist_ok=True)

    def read(self) -> int:
        try:
            return os.stat(self.path).st_mtime_ns
        except OSError:
            return -1  # never equal to a stored stamp: no cache hit

    def bump(self) -> None:
        moment = max(time.time_ns(), self.read() + 1)
        with contextlib.suppress(OSError):
            os.utime(self.path, ns=(moment, moment))


_READ = text("SELECT version FROM mantik_change_stamps WHERE name = :name")
_BUMP = text(
    "INSERT INTO mantik_change_stamps (name, version) VALUES (:name, 1) "
    "ON CONFLICT (name) DO UPDATE SET version = mantik_change_stamps.version + 1"
)


class DatabaseStamp:
    def __init__(self, engine: Engine, name: str) -> None:
        self.engine = engine
        self.name = name

    def read(self) -> int:
        try:
            with self.engine.connect() as connection:
                version = connection.execute(_READ, {"name": self.name}).scalar()
        except SQLAlchemyError:
            return -1
        return 0 if version is None else int(version)

    def bump(self) -> None:
        with self.engine.begin() as connection:
            connection.execute(_BUMP, {"name": self.name})
