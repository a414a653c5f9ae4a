"""Golden files: rendered text compared with a recorded copy in tests/server/golden/."""

from __future__ import annotations

import os
from pathlib import Path

GOLDEN = Path(__file__).parent / "golden"


def assert_golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if os.environ.get("MANTIK_RECORD_GOLDEN") == "1" or not path.exists():
        if os.environ.get("CI") == "true" and not path.exists():
            raise AssertionError(f"golden file {path} is missing")
        path.write_text(text)
    expected = path.read_text()
    assert text == expected, (
        f"{name} differs from the recorded golden file. If the change is intended, re-record "
        f"with: MANTIK_RECORD_GOLDEN=1 pytest {Path(__file__).parent}"
    )
