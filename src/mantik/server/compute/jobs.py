"""How a submitted job is named to its site, and the credentials a request may bring."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from mantik.server.compute.accounts.identity import JobIdentity


@dataclass(frozen=True)
class TrackedJob:
    job_id: str
    workdir: Path
    identity: JobIdentity | None = None  # who the job runs as (None: the platform)


@dataclass(frozen=True)
class SshLogin:
    """A user's login on an SSH site: a private key (PEM/OpenSSH text) or a password."""

    username: str
    password: str | None = field(default=None, repr=False)
    private_key: str | None = field(default=None, repr=False)


@dataclass(frozen=True)
class SiteCredentials:
    """What a request brings for sites, held for that request only (never stored): the
    user's UNICORE login (username, password), and an SSH login for SSH sites."""

    username: str
    password: str = field(repr=False)
    ssh: SshLogin | None = None
