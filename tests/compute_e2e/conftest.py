"""Fixtures for end-to-end compute tests: a signed-in client and small projects on disk."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import mlflow
import pytest

import mantik
from tests.support.platform import PlatformProcess

DEMO = Path(__file__).parents[2] / "examples" / "demo-project"


def sign_in(monkeypatch: pytest.MonkeyPatch, platform: PlatformProcess) -> tuple[str, str]:
    user = platform.new_user("compute")
    monkeypatch.setenv("MANTIK_USERNAME", user[0])
    monkeypatch.setenv("MANTIK_PASSWORD", user[1])
    monkeypatch.setenv("MLFLOW_TRACKING_URI", platform.url)
    mantik.init_tracking()
    return user


@pytest.fixture
def demo(tmp_path: Path) -> Path:
    target = tmp_path / "demo-project"
    shutil.copytree(DEMO, target)
    return target


@pytest.fixture
def make_project(tmp_path: Path) -> Callable[..., Path]:
    """A project with one entry point ``main`` running ``command``, and a backend config."""

    def make(command: str, config: dict[str, Any], files: dict[str, str] | None = None) -> Path:
        root = tmp_path / "project"
        root.mkdir(exist_ok=True)
        (root / "MLproject").write_text(
            "name: test\nentry_points:\n  main:\n    command: " + json.dumps(command) + "\n"
        )
        (root / "backend.json").write_text(json.dumps(config))
        for name, text in (files or {}).items():
            (root / name).write_text(text)
        return root

    return make


@pytest.fixture
def experiment(monkeypatch: pytest.MonkeyPatch, sqlite_platform: PlatformProcess) -> str:
    sign_in(monkeypatch, sqlite_platform)
    return str(mlflow.create_experiment(f"compute-{id(monkeypatch)}"))
