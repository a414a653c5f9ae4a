"""Real OS accounts for jobs that run as their users (``useradd``; CI runs as root).

Accounts made here are removed when the test session ends.
"""

from __future__ import annotations

import atexit
import os
import pwd
import subprocess

from tests.support.services import unavailable


def os_account(name: str) -> pwd.struct_passwd:
    """The OS account ``name``, created (no home, no login shell) if it does not exist."""
    try:
        return pwd.getpwnam(name)
    except KeyError:
        pass
    if os.geteuid() != 0:
        unavailable("OS accounts for jobs (useradd needs root)")
    subprocess.run(
        ["useradd", "--no-create-home", "--shell", "/usr/sbin/nologin", "--user-group", name],
        check=True,
        capture_output=True,
        timeout=60,
    )
    atexit.register(subprocess.run, ["userdel", name], capture_output=True, timeout=60)
    return pwd.getpwnam(name)


def processes_of(uid: int) -> list[str]:
    """The command lines of the live processes that run as ``uid``."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if os.stat(f"/proc/{entry}").st_uid != uid:
                continue
            with open(f"/proc/{entry}/cmdline", "rb") as handle:
                argv = handle.read().split(b"\0")
            with open(f"/proc/{entry}/stat") as handle:
                if handle.read().rsplit(")", 1)[1].split()[0] == "Z":
                    continue
        except (FileNotFoundError, ProcessLookupError):
            continue
        found.append(" ".join(a.decode(errors="replace") for a in argv if a))
    return found
