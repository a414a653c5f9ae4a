"""Locks shared by every worker of the platform, on every host that shares its database.

On PostgreSQL they are advisory locks, so replicas on several hosts coordinate through the
database they already share: a lock ends with its holder's connection, at once when the
process dies (the kernel closes its socket) and within :data:`KEEPALIVE_SECONDS` when its
host falls off the network (TCP keepalives). On SQLite (one host by construction) they are
``flock`` s on files in the data dir, which end with their holder process too.

- :meth:`Locks.hold`: a short critical section (one offline sync, one image-cache change).
- :meth:`Locks.lease`: a lock held for as long as the holder lives (the poller of a site).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy import Engine, create_engine, text
from sqlalchemy.pool import NullPool

log = logging.getLogger("mantik.coordination")

# A holder whose host stopped answering loses its locks after about this long.
KEEPALIVE_SECONDS = 10
_KEEPALIVES = {
    "keepalives": 1,
    "keepalives_idle": 4,
    "keepalives_interval": 2,
    "keepalives_count": 3,
}


class Lease(Protocol):
    def acquire(self) -> bool:
        """Take the lease if nobody holds it; True while this process holds it."""

    def held(self) -> bool:
        """Still ours (False once the connection that held it broke)."""

    def release(self) -> None: ...


class Locks(Protocol):
    def hold(self, name: str, *, wait: bool = True) -> contextlib.AbstractContextManager[bool]:
        """Held inside the block when it yields True; False: another holds it (``wait=False``)."""

    def lease(self, name: str) -> Lease: ...


def lock_key(name: str) -> int:
    """A stable signed 64-bit key for PostgreSQL's advisory locks."""
    return int.from_bytes(
        hashlib.sha256(f"mantik:{name}".encode()).digest()[:8], "big", signed=True
    )


def for_engine(engine: Engine, data_dir: Path) -> Locks:
    if engine.dialect.name == "postgresql":
        return DatabaseLocks(engine)
    return FileLocks(data_dir / "locks")


class DatabaseLocks:
    """PostgreSQL advisory locks: per transaction for :meth:`hold`, per session (on a
    connection of the lease's own) for :meth:`lease`."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    @contextlib.contextmanager
    def hold(self, name: str, *, wait: bool = True) -> Iterator[bool]:
        # The transaction stays open for the block; its end (commit, rollback, a broken
        # connection) releases the lock.
        with self.engine.connect() as connection, connection.begin():
            if wait:
                connection.execute(
                    text("SELECT pg_advisory_xact_lock(:key)"), {"key": lock_key(name)}
                )
                yield True
            else:
                got = connection.execute(
                    text("SELECT pg_try_advisory_xact_lock(:key)"), {"key": lock_key(name)}
                ).scalar()
                yield bool(got)

    def lease(self, name: str) -> Lease:
        return _DatabaseLease(self.engine, name)


class _DatabaseLease:
    def __init__(self, engine: Engine, name: str) -> None:
        # Not pooled: closing the connection ends the session, and with it the lock.
        self.engine = create_engine(engine.url, poolclass=NullPool, connect_args=_KEEPALIVES)
        self.key = lock_key(name)
        self._connection: Any = None

    def acquire(self) -> bool:
        if self.held():
            return True
        try:
            connection = self._connect()
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_try_advisory_lock(%s)", (self.key,))
                got = bool(cursor.fetchone()[0])
        except Exception as exc:  # the database is away: nobody polls until it is back
            log.warning("could not ask the database for a lease: %s", exc)
            return False
        if got:
            self._connection = connection
        else:
            connection.close()
        return got

    def _connect(self) -> Any:
        # The pool's wrapper is kept (its collection would close the connection).
        connection: Any = self.engine.raw_connection()
        connection.dbapi_connection.autocommit = True
        with connection.cursor() as cursor:
            # The server's side too: it ends the session (and the lock) of a silent host.
            for setting, value in _KEEPALIVES.items():
                if setting != "keepalives":
                    cursor.execute(f"SET tcp_{setting} = {int(value)}")
        return connection

    def held(self) -> bool:
        """A session lock lasts as long as its session: a live connection still holds it."""
        if self._connection is None:
            return False
        try:
            with self._connection.cursor() as cursor:
                cursor.execute("SELECT 1")
            return True
        except Exception:
            self.release()
            return False

    def release(self) -> None:
        if self._connection is not None:
            with contextlib.suppress(Exception):
                self._connection.close()
            self._connection = None


class FileLocks:
    """``flock`` on ``<root>/<name>.lock``: the workers of one host."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _open(self, name: str) -> int:
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        safe = hashlib.sha256(name.encode()).hexdigest()[:32]
        return os.open(self.root / f"{safe}.lock", os.O_RDWR | os.O_CREAT, 0o600)

    @contextlib.contextmanager
    def hold(self, name: str, *, wait: bool = True) -> Iterator[bool]:
        descriptor = self._open(name)
        try:
            try:
                fcntl.flock(descriptor, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
            except BlockingIOError:
                yield False
                return
            yield True
        finally:
            os.close(descriptor)  # closing ends the flock

    def lease(self, name: str) -> Lease:
        return _FileLease(self, name)


class _FileLease:
    def __init__(self, locks: FileLocks, name: str) -> None:
        self.locks = locks
        self.name = name
        self._descriptor: int | None = None

    def acquire(self) -> bool:
        if self._descriptor is not None:
            return True
        descriptor = self.locks._open(self.name)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(descriptor)
            return False
        self._descriptor = descriptor
        return True

    def held(self) -> bool:
        return self._descriptor is not None

    def release(self) -> None:
        if self._descriptor is not None:
            os.close(self._descriptor)
            self._descriptor = None
