"""What a driver needs to run one job: everything rendered, nothing secret but the job token."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from mantik.compute.config.model import BackendConfig
from mantik.server.compute.accounts.identity import JobIdentity
from mantik.server.compute.job_folder import JobFolder


def job_name(run_id: str) -> str:
    """The scheduler's name for the job of ``run_id`` (how a crashed hand-over finds it)."""
    return f"mantik-{run_id[:12]}"


@dataclass(frozen=True)
class JobSpec:
    run_id: str
    experiment_id: str
    name: str  # scheduler job name
    command: str  # the entry point's shell command line, already quoted
    workdir: Path  # job folder on the site: project/ inside, .mantik/ for our files
    tracking_uri: str  # how the compute node reaches the platform
    artifact_url: str | None  # where the wrapper PUTs the log (None: the platform does it)
    config: BackendConfig
    image: str | None = None  # image path on the site (None: no container)
    # A platform file the driver must copy to the site as ``image`` (UNICORE), else None.
    image_file: Path | None = None
    project: str | None = None  # accounting project (SLURM --account, UNICORE Project)
    extra_env: dict[str, str] = field(default_factory=dict)
    # True where the site creates the job folder (UNICORE): paths are relative to it.
    site_chooses_workdir: bool = False
    # Offline tracking: how often the node publishes a snapshot of the job's local store.
    snapshot_seconds: float = 10.0
    # Who the job runs as (None: the platform), and folders put first on its PATH.
    identity: JobIdentity | None = None
    path_prefix: tuple[str, ...] = ()
    # The most of the job's output its log keeps (its beginning and its end).
    log_max_bytes: int = 64 * 1024 * 1024

    @property
    def folder(self) -> JobFolder:
        return JobFolder(self.workdir)

    @property
    def mantik_dir(self) -> Path:
        return self.folder.mantik

    @property
    def project_dir(self) -> Path:
        return self.folder.project

    @property
    def script_path(self) -> Path:
        return self.folder.script

    @property
    def log_path(self) -> Path:
        return self.folder.log
