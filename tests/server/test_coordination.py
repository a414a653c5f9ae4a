"""Locks across processes: on PostgreSQL (replicas on several hosts) and on files (SQLite)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mantik.server import coordination
from mantik.server.db import make_engine
from tests.support.services import postgres_uris

_HOLDER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from mantik.server import coordination
    from mantik.server.db import make_engine
    locks = coordination.for_engine(make_engine(sys.argv[1]), Path(sys.argv[2]))
    lease = locks.lease("poll:site-a")
    assert lease.acquire()
    print("held", flush=True)
    time.sleep(600)
    """
)


@pytest.fixture(scope="module", params=["postgresql", "sqlite"])
def uri(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    if request.param == "postgresql":
        return postgres_uris("coordination")["MANTIK_DATABASE_URI"]
    return f"sqlite:///{tmp_path_factory.mktemp('coordination') / 'mantik.db'}"


@pytest.fixture
def locks(uri: str, tmp_path: Path) -> coordination.Locks:
    return coordination.for_engine(make_engine(uri), tmp_path)


@pytest.fixture
def holder(uri: str, tmp_path: Path) -> Iterator[subprocess.Popen[str]]:
    """Another process (another replica) holding the lease of site-a."""
    process = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, uri, str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    assert process.stdout is not None and process.stdout.readline().strip() == "held"
    yield process
    process.kill()
    process.wait()
    process.stdout.close()


def test_one_holder_of_a_lease_and_takeover_when_it_dies(
    locks: coordination.Locks, holder: subprocess.Popen[str]
) -> None:
    lease = locks.lease("poll:site-a")
    assert not lease.acquire()
    other = locks.lease("poll:site-b")
    assert other.acquire()  # another site's lease is free
    other.release()
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait()
    deadline = time.monotonic() + 5
    while not lease.acquire():
        assert time.monotonic() < deadline, "the dead holder's lease was not released"
        time.sleep(0.1)
    assert lease.held()
    lease.release()
    assert not lease.held()


def test_hold_is_exclusive_and_nonblocking_when_asked(locks: coordination.Locks) -> None:
    inside = threading.Event()
    leave = threading.Event()

    def first() -> None:
        with locks.hold("sync:run-1") as got:
            assert got
            inside.set()
            leave.wait(10)

    thread = threading.Thread(target=first)
    thread.start()
    assert inside.wait(10)
    with locks.hold("sync:run-1", wait=False) as got:
        assert not got
    with locks.hold("sync:run-2", wait=False) as got:
        assert got
    leave.set()
    thread.join()
    with locks.hold("sync:run-1", wait=False) as got:
        assert got


def test_lock_keys_are_stable_and_distinct() -> None:
    assert coordination.lock_key("poll:a") == coordination.lock_key("poll:a")
    assert coordination.lock_key("poll:a") != coordination.lock_key("poll:b")
    assert -(2**63) <= coordination.lock_key("x") < 2**63
