"""What offline sync needs from the rest of the platform: small interfaces, nothing more.

The compute service's parts fit them (``Database``, ``RunStore``, ``Sites``); tests may build
the syncer from those parts alone.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy.orm import Session

from mantik.server.compute.jobs import SiteCredentials, TrackedJob


class SessionSource(Protocol):
    """mantik's database: one transaction per ``with``."""

    def session(self) -> AbstractContextManager[Session]: ...


class CentralRuns(Protocol):
    """The central MLflow runs, read and written with the server-side client."""

    @property
    def client(self) -> Any: ...

    def set_tags(self, run_id: str, tags: dict[str, str]) -> None: ...

    def artifact_repository(self, uri: str) -> Any: ...


class JobFolderReader(Protocol):
    """How the platform reads one site's job folders."""

    @property
    def needs_credentials(self) -> bool: ...

    def offline_files(
        self, job: TrackedJob, credentials: SiteCredentials | None = None, *, final: bool = False
    ) -> Path | None: ...


class SiteFolders(Protocol):
    """The configured sites, by name."""

    def __contains__(self, site: object) -> bool: ...

    def driver(self, site: str) -> JobFolderReader: ...
