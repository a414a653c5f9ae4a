"""Run a command on a pseudo-terminal, as a person at a terminal would see it."""

from __future__ import annotations

import os
import pty
import subprocess
from pathlib import Path


def run_on_a_terminal(argv: list[str], env: dict[str, str], cwd: Path) -> tuple[int, str]:
    """Exit code and everything printed (stdout and stderr, escape codes included)."""
    primary, secondary = pty.openpty()
    process = subprocess.Popen(
        argv,
        env={**env, "TERM": "xterm", "COLUMNS": "200"},
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        stdout=secondary,
        stderr=secondary,
    )
    os.close(secondary)
    output = b""
    while True:
        try:
            chunk = os.read(primary, 4096)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        output += chunk
    os.close(primary)
    return process.wait(timeout=120), output.decode(errors="replace")
