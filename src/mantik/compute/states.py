"""Scheduler-neutral job states and how each maps to an MLflow run status."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class JobState(StrEnum):
    SUBMITTED = "SUBMITTED"  # handed to the site, not yet seen by a poll
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"
    TIMEOUT = "TIMEOUT"
    OUT_OF_MEMORY = "OUT_OF_MEMORY"
    NODE_FAIL = "NODE_FAIL"
    PREEMPTED = "PREEMPTED"
    LOST = "LOST"  # the site no longer knows the job and it left no exit code

    @property
    def terminal(self) -> bool:
        return self not in (JobState.SUBMITTED, JobState.PENDING, JobState.RUNNING)

    @property
    def run_status(self) -> str:
        """The MLflow RunStatus name for this state."""
        return _RUN_STATUS[self]


_RUN_STATUS = {
    JobState.SUBMITTED: "SCHEDULED",
    JobState.PENDING: "SCHEDULED",
    JobState.RUNNING: "RUNNING",
    JobState.COMPLETED: "FINISHED",
    JobState.FAILED: "FAILED",
    JobState.CANCELLED: "KILLED",
    JobState.TIMEOUT: "FAILED",
    JobState.OUT_OF_MEMORY: "FAILED",
    JobState.NODE_FAIL: "FAILED",
    JobState.PREEMPTED: "KILLED",
    JobState.LOST: "FAILED",
}


@dataclass(frozen=True)
class Observation:
    """What one poll learned about one job."""

    state: JobState
    reason: str | None = None
    exit_code: int | None = None
