"""Every SLURM end state reaches the run as the right status (a fake squeue at the process
boundary: a real SLURM cannot be made to produce OUT_OF_MEMORY or NODE_FAIL on demand)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from mantik.compute.states import JobState
from mantik.server.compute.drivers.site_config import SiteConfig
from mantik.server.compute.drivers.slurm.driver import SlurmDriver
from mantik.server.compute.jobs import TrackedJob

CASES = {
    "11": ("COMPLETED", "None", JobState.COMPLETED, "FINISHED"),
    "12": ("FAILED", "NonZeroExitCode", JobState.FAILED, "FAILED"),
    "13": ("CANCELLED", "None", JobState.CANCELLED, "KILLED"),
    "14": ("TIMEOUT", "TimeLimit", JobState.TIMEOUT, "FAILED"),
    "15": ("OUT_OF_MEMORY", "OutOfMemory", JobState.OUT_OF_MEMORY, "FAILED"),
    "16": ("NODE_FAIL", "NodeDown", JobState.NODE_FAIL, "FAILED"),
    "17": ("PREEMPTED", "None", JobState.PREEMPTED, "KILLED"),
    "18": ("PENDING", "Priority", JobState.PENDING, "SCHEDULED"),
    "19": ("RUNNING", "None", JobState.RUNNING, "RUNNING"),
    "20": ("COMPLETING", "None", JobState.RUNNING, "RUNNING"),
}


@pytest.fixture
def fake_squeue(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "calls"
    lines = "\\n".join(f"{job}|{state}|{reason}" for job, (state, reason, _, _) in CASES.items())
    script = bin_dir / "squeue"
    script.write_text(f'#!/bin/sh\necho "$@" >> {calls}\nprintf "{lines}\\n"\n')
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return calls


def test_end_states_map_to_run_statuses(fake_squeue: Path, tmp_path: Path) -> None:
    jobs = [TrackedJob(job, tmp_path / job) for job in CASES]
    jobs.append(TrackedJob("99", tmp_path / "99"))  # no longer listed, no exit code
    (tmp_path / "98" / ".mantik").mkdir(parents=True)
    (tmp_path / "98" / ".mantik" / "exit-code").write_text("0\n")
    jobs.append(TrackedJob("98", tmp_path / "98"))  # no longer listed, ended well
    observed = SlurmDriver(SiteConfig(name="s", driver="slurm")).poll(jobs)
    for job, (_, reason, state, run_status) in CASES.items():
        assert observed[job].state is state, job
        assert observed[job].state.run_status == run_status, job
        if state.terminal and reason != "None":
            assert reason in (observed[job].reason or "")
    assert observed["99"].state is JobState.LOST
    assert observed["98"].state is JobState.COMPLETED
    # One scheduler query for all twelve jobs.
    assert len(fake_squeue.read_text().splitlines()) == 1


def test_completed_with_a_failing_exit_code_is_failed(fake_squeue: Path, tmp_path: Path) -> None:
    workdir = tmp_path / "11"
    (workdir / ".mantik").mkdir(parents=True)
    (workdir / ".mantik" / "exit-code").write_text("4\n")
    observed = SlurmDriver(SiteConfig(name="s", driver="slurm")).poll([TrackedJob("11", workdir)])
    assert observed["11"].state is JobState.FAILED
    assert observed["11"].exit_code == 4
