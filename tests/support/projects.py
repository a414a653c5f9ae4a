"""Project fixtures shared by the compute, CLI and ecosystem tests."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

DEMO = Path(__file__).parents[2] / "examples" / "demo-project"


def zipped(project: Path) -> bytes:
    """``project`` as the client uploads it (the bytes of its zip)."""
    from mantik.compute.archive.pack import zip_project_to_tempfile

    path = zip_project_to_tempfile(project)
    try:
        return path.read_bytes()
    finally:
        path.unlink()


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
