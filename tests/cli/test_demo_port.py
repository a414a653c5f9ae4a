"""``make demo`` on a port another server holds: one line naming MANTIK_DEMO_PORT, never a
conversation with the other server (issue 17, item 1)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

DEMO = Path(__file__).parents[2] / "scripts" / "demo.py"


def test_the_demo_refuses_a_busy_port_naming_the_variable(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("MANTIK_", "MLFLOW_"))},
            "MANTIK_DEMO_PORT": str(port),
            "MANTIK_DEMO_DATA_DIR": str(tmp_path / "data"),
            "MANTIK_DEMO_EXIT": "1",
        }
        started = time.monotonic()
        result = subprocess.run(
            [sys.executable, str(DEMO)], env=env, capture_output=True, text=True, timeout=120
        )
        took = time.monotonic() - started
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert f"MANTIK_DEMO_PORT={port}" in lines[0]
    assert "in use" in lines[0]
    assert not (tmp_path / "data").exists()  # refused before anything started
    assert took < 30
