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
class SiteCredentials:
    """A user's credentials for a site, held for one request only (never stored)."""

    username: str
    password: str = field(repr=False)
