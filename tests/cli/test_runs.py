"""``mantik runs`` as a user runs it: the real entry point against the real platform."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.support.platform import PlatformProcess
from tests.support.terminal import run_on_a_terminal

DEMO = Path(__file__).parents[2] / "examples" / "demo-project"
CONFIG = "compute-backend-config.json"

Run = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def env(sqlite_platform: PlatformProcess) -> dict[str, str]:
    username, password = sqlite_platform.new_user("cli")
    inherited = {k: v for k, v in os.environ.items() if not k.startswith(("MANTIK_", "MLFLOW_"))}
    return {
        **inherited,
        "MANTIK_USERNAME": username,
        "MANTIK_PASSWORD": password,
        "MLFLOW_TRACKING_URI": sqlite_platform.url,
        "HOME": os.environ["HOME"],  # the test's own (see the autouse clean_env)
    }


@pytest.fixture
def mantik(env: dict[str, str], tmp_path: Path) -> Run:
    def run(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "mantik.cli", *args],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    return run


@pytest.fixture
def demo(tmp_path: Path) -> Path:
    return Path(shutil.copytree(DEMO, tmp_path / "demo-project"))


def as_json(result: subprocess.CompletedProcess[str]) -> Any:
    assert "Uploading" not in result.stdout + result.stderr  # no progress bar off a terminal
    return json.loads(result.stdout)


def test_demo_run_finishes(mantik: Run, demo: Path) -> None:
    submitted = mantik(
        "runs", "submit", str(demo), "--backend-config", CONFIG,
        "--experiment-name", "cli-demo", "-P", "alpha=0.7", "-P", "l1_ratio=0.2",
        "--run-name", "from the cli", "--wait", "--interval", "0.5", "--json",
    )  # fmt: skip
    assert submitted.returncode == 0, submitted.stderr
    info = as_json(submitted)
    assert (info["run_status"], info["state"], info["site"]) == ("FINISHED", "COMPLETED", "local")
    run_id, experiment_id = info["run_id"], info["experiment_id"]

    status = mantik("runs", "status", run_id)
    assert status.returncode == 0, status.stderr
    assert run_id in status.stdout
    assert "FINISHED" in status.stdout

    listed = mantik("runs", "list", "--json", "--experiment-id", experiment_id)
    assert [r["run_id"] for r in as_json(listed)] == [run_id]
    assert as_json(mantik("runs", "list", "--json", "--state", "running")) == []
    table = mantik("runs", "list", "--experiment-id", experiment_id)
    assert run_id in table.stdout

    logs = mantik("runs", "logs", run_id)
    assert "trained ElasticNet(alpha=0.7, l1_ratio=0.2)" in logs.stdout
    again = mantik("runs", "wait", run_id, "--json")
    assert (again.returncode, as_json(again)["run_status"]) == (0, "FINISHED")


def test_failed_killed_and_timed_out_runs(
    mantik: Run, demo: Path, env: dict[str, str], tmp_path: Path
) -> None:
    created = mantik(
        "runs", "submit", str(demo), "--backend-config", CONFIG, "--experiment-name", "cli-ends",
        "--entry-point", "sleep", "-P", "seconds=300", "--json",
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    sleeping = as_json(created)
    run_id, experiment_id = sleeping["run_id"], sleeping["experiment_id"]
    assert set(sleeping) >= {"run_id", "experiment_id", "job_id", "site"}

    failed = mantik(
        "runs", "submit", str(demo), "--backend-config", CONFIG, "--experiment-id", experiment_id,
        "--entry-point", "fail", "--wait", "--interval", "0.5",
    )  # fmt: skip
    assert failed.returncode == 2, failed.stderr
    assert "FAILED" in failed.stdout
    assert "FAILED" in failed.stderr  # the hint where to look
    failed_id = re.search(r"Submitted run ([0-9a-f]{32})", failed.stderr)
    assert failed_id, failed.stderr
    logs = mantik("runs", "logs", "--follow", failed_id.group(1))
    assert (logs.returncode, "about to fail" in logs.stdout) == (0, True)

    waited = mantik("runs", "wait", run_id, "--timeout", "1", "--interval", "0.5")
    assert waited.returncode == 4, waited.stderr
    assert "still" in waited.stderr

    follower = subprocess.Popen(
        [sys.executable, "-m", "mantik.cli", "runs", "logs", run_id, "-f", "--interval", "0.5"],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    cancelled = mantik("runs", "cancel", run_id)
    assert (cancelled.returncode, cancelled.stdout) == (0, f"Cancelling run {run_id}.\n")
    killed = mantik("runs", "wait", run_id, "--json", "--interval", "0.5")
    assert (killed.returncode, as_json(killed)["run_status"]) == (3, "KILLED")
    followed, _ = follower.communicate(timeout=30)
    assert (follower.returncode, "sleeping" in followed) == (0, True)

    listed = mantik("runs", "list", "--json", "--experiment-id", experiment_id)
    states = {r["run_id"]: r["run_status"] for r in as_json(listed)}
    assert states == {run_id: "KILLED", failed_id.group(1): "FAILED"}
    cancelled_only = mantik("runs", "list", "--json", "--state", "CANCELLED")
    assert [r["run_id"] for r in as_json(cancelled_only)] == [run_id]


def test_upload_progress_on_a_terminal(env: dict[str, str], demo: Path, tmp_path: Path) -> None:
    argv = [
        sys.executable, "-m", "mantik.cli", "runs", "submit", str(demo),
        "--backend-config", str(demo / CONFIG),  # absolute, inside the project
        "--experiment-name", "cli-tty", "--entry-point", "fail",
    ]  # fmt: skip
    code, text = run_on_a_terminal(argv, env, tmp_path)
    assert code == 0, text
    assert "Uploading" in text
    assert re.search(r"[\d.]+/[\d.]+ kB", text), text
    assert "Submitted run" in text


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-P", "alpha"], "'alpha' is not name=value"),
        (["--backend-config", "missing.json"], "missing.json does not exist"),
        (["--experiment-name", "x"], "exactly one of --experiment-id and --experiment-name"),
        (["--follow", "--timeout", "5"], "--timeout works with --wait, not with --follow"),
    ],
)
def test_errors_are_one_line(mantik: Run, demo: Path, args: list[str], message: str) -> None:
    defaults = {"--backend-config": CONFIG, "--experiment-id": "1"}
    for option, value in defaults.items():
        if option not in args:
            args = [*args, option, value]
    result = mantik("runs", "submit", str(demo), *args)
    assert result.returncode == 1
    assert result.stdout == ""
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "Traceback" not in result.stderr
    debug = mantik("--debug", "runs", "submit", str(demo), *args)
    assert debug.returncode == 1
    assert "Traceback" in debug.stderr


def test_usage_errors_exit_1_not_2(mantik: Run, demo: Path) -> None:
    """2 means "the run FAILED", so a typo must not exit 2."""
    assert mantik("runs", "submit", str(demo), "--no-such-option").returncode == 1
    assert mantik("runs", "list", "--state", "FINISHED").returncode == 1
    assert mantik("runs", "no-such-command").returncode == 1
