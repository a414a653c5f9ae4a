"""Debian's OpenSSH server on a loopback port, with its own host key and config (never the
machine's sshd), and login accounts with their keys (``useradd``; the tests run as root)."""

from __future__ import annotations

import atexit
import os
import secrets
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.support.platform import free_port
from tests.support.services import unavailable

SSHD = Path("/usr/sbin/sshd")


@dataclass(frozen=True)
class Sshd:
    port: int
    host_key: str  # "<type> <base64>", as a site pins it
    root: Path

    def log_text(self) -> str:
        return (self.root / "sshd.log").read_text(errors="replace")


@dataclass(frozen=True)
class Login:
    name: str
    key_file: Path  # the private key (0600)
    password: str


def keypair(path: Path) -> str:
    """An ed25519 key pair at ``path`` (+ ``.pub``); returns the public line's type and key."""
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "", "-f", str(path)], check=True
    )
    kind, data = path.with_suffix(".pub").read_text().split()[:2]
    return f"{kind} {data}"


@contextmanager
def start_sshd(root: Path) -> Iterator[Sshd]:
    if os.geteuid() != 0 or not SSHD.exists():
        unavailable("OpenSSH's server (scripts/system-deps.sh) and root")
    root.mkdir(parents=True, exist_ok=True)
    (root / "authorized").mkdir()
    host_key = keypair(root / "host_ed25519")
    port = free_port()
    config = root / "sshd_config"
    config.write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {root}/host_ed25519\n"
        f"PidFile {root}/sshd.pid\nAuthorizedKeysFile {root}/authorized/%u\n"
        "StrictModes no\nUsePAM no\nPasswordAuthentication yes\n"
        "KbdInteractiveAuthentication no\nPermitRootLogin no\n"
        "Subsystem sftp internal-sftp\nLogLevel VERBOSE\n"
    )
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege separation
    log = (root / "sshd.log").open("wb")
    process = subprocess.Popen(
        [str(SSHD), "-D", "-e", "-f", str(config)], stdout=log, stderr=subprocess.STDOUT
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            assert process.poll() is None, (root / "sshd.log").read_text()
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    break
            assert time.monotonic() < deadline, "sshd did not listen"
            time.sleep(0.1)
        yield Sshd(port, host_key, root)
    finally:
        process.terminate()
        process.wait(timeout=20)
        log.close()


def login_account(sshd: Sshd, name: str) -> Login:
    """An account with a home, bash, a password and an authorized key (removed at exit)."""
    subprocess.run(
        ["useradd", "--create-home", "--shell", "/bin/bash", "--user-group", name],
        check=True,
        capture_output=True,
    )
    atexit.register(subprocess.run, ["userdel", "--remove", name], capture_output=True)
    password = f"Ssh-{secrets.token_urlsafe(12)}-1"
    subprocess.run(["chpasswd"], input=f"{name}:{password}", text=True, check=True)
    keys = sshd.root / "keys"
    keys.mkdir(exist_ok=True)
    key_file = keys / name
    public = keypair(key_file)
    (sshd.root / "authorized" / name).write_text(public + "\n")
    shutil.chown(key_file, "root")
    key_file.chmod(0o600)
    return Login(name, key_file, password)
