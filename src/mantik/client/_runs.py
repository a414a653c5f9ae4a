"""What the compute client hands back: a submitted run, and a run's state as the platform
reports it."""

from __future__ import annotations

import dataclasses
from dataclasses import asdict, dataclass
from typing import Any

_TERMINAL = ("FINISHED", "FAILED", "KILLED")


@dataclass(frozen=True)
class SubmittedRun:
    """What :meth:`ComputeBackendClient.submit_run` returns."""

    experiment_id: str
    run_id: str
    job_id: str
    site: str
    # Image bytes this submission uploaded: 0 when the platform already held the image.
    image_bytes_sent: int = 0

    @property
    def unicore_job_id(self) -> str:
        return self.job_id

    def json(self) -> dict[str, str]:
        """The platform's answer as a dict (mantik 0.1.x returned the HTTP response)."""
        answer = {k: v for k, v in asdict(self).items() if k != "image_bytes_sent"}
        return {**answer, "unicore_job_id": self.job_id}


@dataclass(frozen=True)
class RunInfo:
    """A submitted run as the platform reports it (:meth:`ComputeBackendClient.get_status`)."""

    run_id: str
    experiment_id: str
    site: str
    job_id: str | None
    state: str  # the scheduler-neutral job state, e.g. PENDING, RUNNING, TIMEOUT
    run_status: str  # the MLflow run status: SCHEDULED, RUNNING, FINISHED, FAILED, KILLED
    reason: str | None
    exit_code: int | None
    entry_point: str
    submitted_at: str
    finished_at: str | None
    tracking: str | None = None  # online | offline, once the job started
    # Offline runs: seconds since the newest point that reached the platform (None when
    # all is synced), and when the platform synced last.
    sync_lag_seconds: float | None = None
    synced_at: str | None = None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RunInfo:
        """Fields a newer platform adds are ignored: this client keeps working."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})

    @property
    def done(self) -> bool:
        return self.run_status in _TERMINAL
