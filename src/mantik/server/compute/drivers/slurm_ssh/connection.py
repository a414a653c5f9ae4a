"""One SSH connection to a site's login node, for one request (paramiko).

The host key is the one the admin pinned (no trust on first use); the user's key or
password is used for this connection only. Commands run in a login shell, so what the
site's profile sets up (modules, SLURM on PATH) is there, as for a user who logs in.
"""

from __future__ import annotations

import base64
import io
import shlex
import stat
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from types import TracebackType

import paramiko

from mantik.server.compute.drivers.site_config import SshEndpoint
from mantik.server.compute.errors import CredentialsRefused, SiteFailed, SiteRefused
from mantik.server.compute.jobs import SshLogin

_KEY_TYPES: tuple[type[paramiko.PKey], ...] = (
    paramiko.Ed25519Key,
    paramiko.ECDSAKey,
    paramiko.RSAKey,
)


@dataclass(frozen=True)
class Result:
    code: int
    out: str
    err: str


def _private_key(text: str) -> paramiko.PKey:
    for cls in _KEY_TYPES:
        try:
            return cls.from_private_key(io.StringIO(text))
        except (paramiko.SSHException, ValueError):
            continue
    raise SiteRefused(
        "MANTIK_SSH_KEY_FILE holds no private key mantik can use (an unencrypted "
        "OpenSSH or PEM key: ed25519, ECDSA or RSA)."
    )


def _pinned(endpoint: SshEndpoint) -> paramiko.PKey:
    kind, data = endpoint.host_key.split()
    return paramiko.PKey.from_type_string(kind, base64.b64decode(data))


class SshSession:
    """``with SshSession(...) as ssh:`` — commands and SFTP over one connection."""

    def __init__(self, site: str, endpoint: SshEndpoint, login: SshLogin) -> None:
        self.site = site
        self.endpoint = endpoint
        self.login = login
        self._client = paramiko.SSHClient()
        self._sftp: paramiko.SFTPClient | None = None

    def __enter__(self) -> SshSession:
        endpoint, login = self.endpoint, self.login
        where = f"{endpoint.host}:{endpoint.port}"
        pinned = _pinned(endpoint)
        name = endpoint.host if endpoint.port == 22 else f"[{endpoint.host}]:{endpoint.port}"
        self._client.get_host_keys().add(name, pinned.get_name(), pinned)
        self._client.set_missing_host_key_policy(paramiko.RejectPolicy())
        try:
            self._client.connect(
                endpoint.host,
                endpoint.port,
                username=login.username,
                password=login.password,
                pkey=_private_key(login.private_key) if login.private_key else None,
                look_for_keys=False,
                allow_agent=False,
                timeout=15,
                banner_timeout=15,
                auth_timeout=15,
            )
        except paramiko.BadHostKeyException as exc:
            raise SiteFailed(
                f"Site {self.site!r}: {where} did not show the host key the admin pinned "
                f"(it showed {exc.key.get_name()} {exc.key.fingerprint}, the site expects "
                f"{exc.expected_key.get_name()} {exc.expected_key.fingerprint}). Nothing was "
                "sent. If the host was re-keyed, the admin updates the site's host_key."
            ) from exc
        except paramiko.AuthenticationException as exc:
            raise CredentialsRefused(
                f"Site {self.site!r} refused the SSH login of {login.username!r}: check "
                "MANTIK_SSH_USER and MANTIK_SSH_KEY_FILE (or MANTIK_SSH_PASSWORD)."
            ) from exc
        except (TimeoutError, OSError, paramiko.SSHException) as exc:
            if "host key" in str(exc).lower():
                raise SiteFailed(
                    f"Site {self.site!r}: {where} has no host key of the type the admin "
                    f"pinned ({pinned.get_name()} {pinned.fingerprint}). Nothing was sent."
                ) from exc
            raise SiteFailed(f"Site {self.site!r}: cannot reach {where} over SSH: {exc}") from exc
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        if self._sftp is not None:
            self._sftp.close()
        self._client.close()

    def run(self, argv: list[str], *, timeout: float = 120) -> Result:
        """``argv`` in a login shell on the login node."""
        command = shlex.join(["bash", "-lc", shlex.join(argv)])
        try:
            _, stdout, stderr = self._client.exec_command(command, timeout=timeout)
            out = stdout.read().decode(errors="replace")
            err = stderr.read().decode(errors="replace")
            code = stdout.channel.recv_exit_status()
        except (TimeoutError, OSError, paramiko.SSHException) as exc:
            raise SiteFailed(f"Site {self.site!r}: {argv[0]} over SSH failed: {exc}") from exc
        return Result(code, out, err)

    @property
    def sftp(self) -> paramiko.SFTPClient:
        if self._sftp is None:
            self._sftp = self._client.open_sftp()
            self._sftp.get_channel().settimeout(120)  # a stalled site fails, never hangs
        return self._sftp

    def home_path(self, path: str) -> str:
        """``path`` on the login node, absolute (relative ones are in the user's home)."""
        return self.sftp.normalize(".") + "/" + path if not path.startswith("/") else path

    def makedirs(self, path: str, mode: int = 0o700) -> None:
        parts = PurePosixPath(path).parts
        for depth in range(2, len(parts) + 1):
            folder = str(PurePosixPath(*parts[:depth]))
            try:
                self.sftp.stat(folder)
            except FileNotFoundError:
                self.sftp.mkdir(folder, mode)

    def upload_tree(self, local: Path, remote: str) -> None:
        """The regular files and folders under ``local`` (no symlinks), modes kept."""
        self.makedirs(remote)
        for path in sorted(local.rglob("*")):
            info = path.lstat()
            target = f"{remote}/{path.relative_to(local).as_posix()}"
            if stat.S_ISDIR(info.st_mode):
                self.sftp.mkdir(target, 0o700)
            elif stat.S_ISREG(info.st_mode):
                self.sftp.put(str(path), target)
                self.sftp.chmod(target, stat.S_IMODE(info.st_mode) & 0o700)

    def read_text(self, path: str, limit: int = 64 * 1024 * 1024) -> str | None:
        try:
            with self.sftp.open(path, "rb") as handle:
                data: bytes = handle.read(limit)
        except (FileNotFoundError, PermissionError, OSError):
            return None
        return data.decode(errors="replace")
