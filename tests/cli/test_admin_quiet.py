"""Admin commands print what they did, no library warnings (issue 17, item 5)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def test_admin_users_create_prints_no_warning(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "mantik.cli", "admin", "users", "create", "quiet",
         "--data-dir", str(tmp_path / "data")],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "Created user 'quiet'" in result.stdout
    assert "Warning" not in result.stderr, result.stderr
