"""Shared fixtures: a real platform process on loopback, users, a clean environment."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.platform import PlatformProcess, start_platform
from tests.support.projects import demo, make_project  # noqa: F401 (fixtures)
from tests.support.s3 import S3Store, start_seaweedfs
from tests.support.services import postgres_uris

_CLIENT_ENV = (
    "MANTIK_USERNAME",
    "MANTIK_PASSWORD",
    "MANTIK_UNICORE_USERNAME",
    "MANTIK_UNICORE_USER",
    "MANTIK_UNICORE_PASSWORD",
    "MANTIK_UNICORE_PROJECT",
    "MLFLOW_TRACKING_URI",
    "MLFLOW_TRACKING_TOKEN",
    "MLFLOW_TRACKING_AUTH",
    "MLFLOW_TRACKING_USERNAME",
    "MLFLOW_TRACKING_PASSWORD",
    "MLFLOW_EXPERIMENT_NAME",
    "MLFLOW_EXPERIMENT_ID",
    "MLFLOW_RUN_ID",
)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """Every test starts without mantik/MLflow variables and with its own HOME."""
    for name in _CLIENT_ENV:
        monkeypatch.delenv(name, raising=False)
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    yield
    import mlflow

    if mlflow.active_run() is not None:
        mlflow.end_run()
    mlflow.set_tracking_uri(None)
    # No public API unsets an experiment chosen with mlflow.set_experiment().
    mlflow.tracking.fluent._active_experiment_id = None


@pytest.fixture(autouse=True)
def reachable_tmp_path(tmp_path: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    """As root, jobs run under other accounts and run what tests put in ``tmp_path`` (stand-in
    tools, projects): pytest's 0700 folders on the way there let them pass (not list)."""
    if os.geteuid() != 0:
        return
    base = tmp_path_factory.getbasetemp()
    for folder in (base.parent, base, tmp_path):
        # Only add the pass bits: a --basetemp under /tmp must leave /tmp's 1777 as it is.
        folder.chmod(stat.S_IMODE(folder.stat().st_mode) | 0o111)


@pytest.fixture(scope="session", params=["sqlite", "postgres"])
def platform(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[PlatformProcess]:
    """The real platform (``mantik server start``) on SQLite and on PostgreSQL."""
    data_dir = tmp_path_factory.mktemp(f"platform-{request.param}")
    env: dict[str, str] = {}
    if request.param == "postgres":
        env.update(postgres_uris(f"mantik_{os.getpid()}"))
    with start_platform(data_dir, env=env) as process:
        yield process


@pytest.fixture(scope="session")
def sqlite_platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PlatformProcess]:
    """One SQLite platform for tests that need not run on both databases."""
    with start_platform(tmp_path_factory.mktemp("platform-one")) as process:
        yield process


@pytest.fixture(scope="session")
def s3_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Store]:
    """One real S3 store (SeaweedFS on loopback) for the session; platforms on it use
    ``s3_store.env()`` and a destination of their own under its bucket."""
    with start_seaweedfs(tmp_path_factory.mktemp("s3")) as store:
        yield store
