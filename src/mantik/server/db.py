"""Database engine and schema migrations for mantik's own tables."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
# Our own version table, so mantik can share one database with MLflow's stores.
VERSION_TABLE = "mantik_alembic_version"


# Waiting writers queue this long for the lock instead of failing ("database is locked").
SQLITE_BUSY_MS = 30_000


def _tune_sqlite(dbapi_conn: Any, _record: Any) -> None:
    if not isinstance(dbapi_conn, sqlite3.Connection):
        return
    cursor = dbapi_conn.cursor()
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_MS}")
    # Readers no longer block the writer (nor it them), and a commit is one append to the
    # log (synchronous=NORMAL: durable across a crash of the platform, not of the host).
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def tune_every_sqlite_engine() -> None:
    """WAL and a busy timeout on every SQLite connection this process opens, MLflow's
    stores' (which make their own engines) included. Idempotent."""
    if not event.contains(Engine, "connect", _tune_sqlite):
        event.listen(Engine, "connect", _tune_sqlite)


def make_engine(uri: str) -> Engine:
    tune_every_sqlite_engine()
    if uri.startswith("sqlite"):
        engine = create_engine(uri, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _foreign_keys(dbapi_conn, _record):  # type: ignore[no-untyped-def]
            cursor = dbapi_conn.cursor()
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        return engine
    return create_engine(uri, pool_pre_ping=True)


def upgrade_schema(engine: Engine) -> None:
    """Bring mantik's tables to the newest revision (idempotent)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")


class Database:
    """Owns the engine and hands out sessions; one per process."""

    def __init__(self, uri: str) -> None:
        self.engine = make_engine(uri)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    @contextmanager
    def session(self) -> Iterator[Session]:
        # Commits on success, rolls back on error; code may commit early on purpose
        # (e.g. to record a failed sign-in) before raising.
        with self._sessions() as session:
            try:
                yield session
            except BaseException:
                session.rollback()
                raise
            session.commit()
