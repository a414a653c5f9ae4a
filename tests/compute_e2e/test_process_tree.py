"""Cancel leaves no process of the job: not its background loops, nor what escaped its
process group (``setsid``) or its parent (a daemonised child, adopted by init)."""

from __future__ import annotations

import os
import pwd
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import mlflow
import pytest

import mantik
from tests.compute_e2e.conftest import sign_in
from tests.support.accounts import processes_of
from tests.support.platform import PlatformProcess, unique
from tests.support.services import require_slurm, unavailable

# Each piece tries another way out of the job's tree.
ESCAPES = (
    "nohup sleep 1000 >/dev/null 2>&1 & "
    "setsid bash -c 'while :; do sleep 1; done' & "
    "(setsid bash -c 'while :; do sleep 1; done' >/dev/null 2>&1 &); "
    "while :; do sleep 1; done & "
    "echo all-started; wait"
)


@pytest.fixture(autouse=True)
def _as_root() -> None:
    if os.geteuid() != 0:
        unavailable("jobs under their own accounts (the platform must run as root: CI does)")


def _cancel_leaves_nothing(
    platform: PlatformProcess,
    monkeypatch: pytest.MonkeyPatch,
    make_project: Callable[..., Path],
    config: dict[str, Any],
) -> None:
    user = sign_in(monkeypatch, platform)
    uid = pwd.getpwnam(user[0]).pw_uid
    client = mantik.ComputeBackendClient.from_env()
    experiment = str(mlflow.create_experiment(unique("tree")))
    run = client.submit_run(experiment, {}, make_project(ESCAPES, config), "backend.json")
    deadline = time.monotonic() + 120
    while "all-started" not in client.get_logs(run.run_id):
        assert time.monotonic() < deadline, client.get_logs(run.run_id)
        time.sleep(0.5)
    time.sleep(1)  # the daemonised loop has been adopted by init
    assert sum("while :" in p for p in processes_of(uid)) >= 2, processes_of(uid)

    client.cancel(run.run_id)
    assert client.wait(run.run_id, timeout=90, interval=0.5).run_status == "KILLED"
    deadline = time.monotonic() + 20
    while processes_of(uid) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert processes_of(uid) == []


def test_cancel_of_a_local_job_leaves_no_process(
    sqlite_platform: PlatformProcess,
    monkeypatch: pytest.MonkeyPatch,
    make_project: Callable[..., Path],
) -> None:
    _cancel_leaves_nothing(sqlite_platform, monkeypatch, make_project, {"ComputeSite": "local"})


def test_cancel_of_a_slurm_job_leaves_no_process(
    sqlite_platform: PlatformProcess,
    monkeypatch: pytest.MonkeyPatch,
    make_project: Callable[..., Path],
) -> None:
    require_slurm()
    config = {"ComputeSite": "slurm", "Resources": {"Queue": "debug", "Runtime": "5m"}}
    _cancel_leaves_nothing(sqlite_platform, monkeypatch, make_project, config)
