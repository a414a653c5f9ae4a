"""An OS identity a job runs as, and how the platform runs a command under it.

As root the platform switches directly (``setpriv``: no shell, no PAM, the account's groups
or none); otherwise through ``sudo -n -u ACCOUNT`` under the rule that
``mantik admin sudoers`` prints. A job of the platform's own identity runs unchanged.
"""

from __future__ import annotations

import os
import pwd
import shutil
from dataclasses import dataclass
from pathlib import Path

from mantik.server.compute.errors import SiteFailed

# What a job's environment starts from when it runs under another account: nothing of the
# platform's (its HOME, TMPDIR or Python), the locale and time zone excepted.
SYSTEM_PATH = "/usr/local/bin:/usr/bin:/bin"
_KEPT = ("LANG", "LC_ALL", "TZ")


@dataclass(frozen=True)
class JobIdentity:
    uid: int
    gid: int
    account: str | None = None  # the OS account; None for a per-user uid with no passwd entry
    home: Path | None = None

    @classmethod
    def platform(cls) -> JobIdentity:
        try:
            entry = pwd.getpwuid(os.getuid())
        except KeyError:
            return cls(os.getuid(), os.getgid())
        return cls(entry.pw_uid, entry.pw_gid, entry.pw_name, Path(entry.pw_dir))

    @classmethod
    def of_account(cls, name: str) -> JobIdentity | None:
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            return None
        return cls(entry.pw_uid, entry.pw_gid, entry.pw_name, Path(entry.pw_dir))

    @property
    def is_platform(self) -> bool:
        return self.uid == os.getuid()

    @property
    def login(self) -> str:
        return self.account or f"mantik-{self.uid}"

    def environment(self) -> dict[str, str]:
        """The environment a command starts with under this (other) identity."""
        env = {name: os.environ[name] for name in _KEPT if name in os.environ}
        home = self.home if self.home and self.home.is_dir() else Path("/")
        env.update(
            PATH=SYSTEM_PATH, HOME=str(home), USER=self.login, LOGNAME=self.login, SHELL="/bin/bash"
        )
        return env


def _absolute(program: str) -> str:
    found = shutil.which(program, path=f"{SYSTEM_PATH}:/usr/sbin:/sbin:{os.defpath}")
    if found is None:
        raise SiteFailed(f"{program} is not installed on the platform's host")
    return found


def command_as(identity: JobIdentity, argv: list[str]) -> list[str]:
    """``argv`` as ``identity`` runs it (programs by absolute path, as sudoers names them)."""
    if identity.is_platform:
        return argv
    argv = [_absolute(argv[0]), *argv[1:]]
    if os.geteuid() == 0:
        groups = "--init-groups" if identity.account else "--clear-groups"
        return [
            _absolute("setpriv"),
            f"--reuid={identity.uid}",
            f"--regid={identity.gid}",
            groups,
            "--",
            *argv,
        ]
    if identity.account is None:
        raise SiteFailed("only a platform running as root can use per-user uids")
    return [_absolute("sudo"), "-n", "-u", identity.account, "--", *argv]


def switch_refused(stderr: str, identity: JobIdentity) -> SiteFailed | None:
    """The error to raise when sudo (not the command) refused to switch."""
    if identity.is_platform or os.geteuid() == 0 or not stderr.startswith("sudo:"):
        return None
    return SiteFailed(
        f"The platform may not run jobs as account {identity.login!r}: "
        f"{stderr.strip().splitlines()[0]}. The admin installs the rule that "
        "`mantik admin sudoers` prints."
    )
