"""Fixtures for end-to-end compute tests: a signed-in client and small projects on disk."""

from __future__ import annotations

import uuid
from pathlib import Path

import mlflow
import pytest

import mantik
from tests.support.platform import PlatformProcess

DEMO = Path(__file__).parents[2] / "examples" / "demo-project"


def sign_in(monkeypatch: pytest.MonkeyPatch, platform: PlatformProcess) -> tuple[str, str]:
    user = platform.new_user("compute", os_account=True)  # SLURM runs jobs as real accounts
    monkeypatch.setenv("MANTIK_USERNAME", user[0])
    monkeypatch.setenv("MANTIK_PASSWORD", user[1])
    monkeypatch.setenv("MLFLOW_TRACKING_URI", platform.url)
    mantik.init_tracking()
    return user


@pytest.fixture
def experiment(monkeypatch: pytest.MonkeyPatch, sqlite_platform: PlatformProcess) -> str:
    sign_in(monkeypatch, sqlite_platform)
    return str(mlflow.create_experiment(f"compute-{uuid.uuid4().hex}"))
