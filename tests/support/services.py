"""Services the tests need (PostgreSQL, SLURM), started by the project's scripts.

Locally a missing service skips its tests; under CI (``CI=true``) it fails them, because
`make test` is supposed to have started it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time

import pytest

# scripts/postgres.sh starts the test cluster here (trust auth on loopback only).
PG_ADMIN_URL = os.environ.get("MANTIK_TEST_PG", "postgresql://mantik@127.0.0.1:55432/postgres")


def unavailable(what: str) -> None:
    message = f"{what} is not running: start it with `make services-up` (or run `make test`)"
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


def _psql(sql: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["psql", PG_ADMIN_URL, "-v", "ON_ERROR_STOP=1", "-qAt", "-c", sql],
        capture_output=True,
        text=True,
        timeout=60,
    )


def postgres_uris(prefix: str) -> dict[str, str]:
    """Fresh databases for mantik, MLflow tracking and MLflow auth; their URIs as env."""
    if shutil.which("psql") is None or _psql("select 1").returncode != 0:
        unavailable("PostgreSQL (scripts/postgres.sh)")
    base = PG_ADMIN_URL.rsplit("/", 1)[0]
    env = {}
    for key, name in (
        ("MANTIK_DATABASE_URI", f"{prefix}_mantik"),
        ("MANTIK_BACKEND_STORE_URI", f"{prefix}_tracking"),
        ("MANTIK_AUTH_DATABASE_URI", f"{prefix}_auth"),
    ):
        _psql(f'DROP DATABASE IF EXISTS "{name}"')
        result = _psql(f'CREATE DATABASE "{name}"')
        assert result.returncode == 0, result.stderr
        env[key] = f"{base.replace('postgresql://', 'postgresql+psycopg2://')}/{name}"
    return env


def slurm_available(wait: float = 60) -> bool:
    """The node takes jobs; a node still completing the last test's jobs is waited for."""
    if shutil.which("sinfo") is None:
        return False
    deadline = time.monotonic() + wait
    while True:
        try:
            result = subprocess.run(
                ["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=20
            )
        except subprocess.TimeoutExpired:
            return False
        states = result.stdout.split()
        if result.returncode == 0 and any(s in states for s in ("idle", "mixed", "allocated")):
            return True
        if result.returncode != 0 or time.monotonic() > deadline:
            return False
        time.sleep(1)


def require_slurm() -> None:
    if not slurm_available():
        unavailable("SLURM (scripts/slurm.sh)")
