"""The user guide's Python blocks run, in order, against the real platform."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.compute_e2e.conftest import sign_in
from tests.support.platform import PlatformProcess
from tests.support.projects import DEMO

GUIDE = Path(__file__).parents[2] / "docs" / "user-guide.md"


def python_blocks(text: str) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", text, flags=re.S | re.M)


def test_the_guide_has_runnable_blocks() -> None:
    assert len(python_blocks(GUIDE.read_text())) >= 3


def test_user_guide_examples_run(
    sqlite_platform: PlatformProcess, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    sign_in(monkeypatch, sqlite_platform)
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {"DEMO_PROJECT": DEMO}
    for number, block in enumerate(python_blocks(GUIDE.read_text()), start=1):
        code = compile(block, f"{GUIDE.name} block {number}", "exec")
        exec(code, namespace)  # our own documentation
