"""The wrapper in offline mode, really running: probe, local store under the central ids,
snapshots while the job runs and after SIGTERM."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from mantik.server.compute.drivers.wrapper import render_wrapper
from tests.server.drivers.test_wrapper import _NoDriver, spec
from tests.support.platform import free_port

RUN_ID = "0123456789abcdef0123456789abcdef"
TRAIN = """
import os, sys, time, mlflow
expected = os.environ["MLFLOW_RUN_ID"], os.environ["MLFLOW_EXPERIMENT_ID"]
with mlflow.start_run() as run:
    assert (run.info.run_id, run.info.experiment_id) == expected, run.info
    mlflow.log_param("lr", "0.1")
    for step in range(int(sys.argv[1])):
        mlflow.log_metric("loss", 1 / (step + 1), step=step)
        if step == 9:
            print("ten points", flush=True)
        time.sleep(float(sys.argv[2]))
"""


def _job(tmp_path: Path, tracking: str, points: int, pause: float) -> Any:
    job = spec(
        {"Tracking": tracking},
        workdir=tmp_path,
        command=f"python train.py {points} {pause}",
        tracking_uri=f"http://127.0.0.1:{free_port()}",  # nobody listens: unreachable
        artifact_url=None,
        snapshot_seconds=0.5,
    )
    _NoDriver().write_job(job, "t")
    (tmp_path / "project").mkdir()
    (tmp_path / "project" / "train.py").write_text(TRAIN)
    return job


def _env() -> dict[str, str]:
    # The job finds this venv's Python (and MLflow) first, as a job on the local site does.
    return {"PATH": os.pathsep.join([os.path.dirname(sys.executable), os.environ["PATH"]])}


def _count(database: Path, sql: str) -> int:
    connection = sqlite3.connect(f"file:{database}?mode=ro", uri=True)
    try:
        return int(connection.execute(sql).fetchone()[0])
    finally:
        connection.close()


def test_auto_goes_offline_when_the_platform_is_unreachable(tmp_path: Path) -> None:
    job = _job(tmp_path, "auto", points=50, pause=0)
    result = subprocess.run(
        ["bash", str(job.script_path)], env=_env(), capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr
    offline = tmp_path / ".mantik" / "offline"
    assert (tmp_path / ".mantik" / "tracking").read_text().strip() == "offline"
    snapshot = offline / "snapshot.db"
    assert _count(snapshot, "SELECT count(*) FROM metrics") == 50
    assert _count(snapshot, f"SELECT count(*) FROM runs WHERE run_uuid = '{RUN_ID}'") == 1
    assert _count(snapshot, "SELECT experiment_id FROM runs") == 7
    assert _count(snapshot, "SELECT count(*) FROM params WHERE key = 'lr'") == 1
    assert not (offline / "snapshot.db.tmp").exists()
    assert "tracking offline" in (tmp_path / ".mantik" / "job.log").read_text()
    assert not (tmp_path / ".mantik" / "api.err").exists()  # no request was even tried


def test_snapshots_while_running_and_a_last_one_after_sigterm(tmp_path: Path) -> None:
    job = _job(tmp_path, "offline", points=100_000, pause=0.01)
    process = subprocess.Popen(
        ["bash", str(job.script_path)], env=_env(), stdout=subprocess.DEVNULL, text=True
    )
    log = tmp_path / ".mantik" / "job.log"  # the job's output goes only into its log
    try:
        deadline = time.monotonic() + 60
        while not log.exists() or "ten points\n" not in log.read_text(errors="replace"):
            assert process.poll() is None, "the job ended early"
            assert time.monotonic() < deadline, "the job never logged ten points"
            time.sleep(0.2)
        snapshot = tmp_path / ".mantik" / "offline" / "snapshot.db"
        deadline = time.monotonic() + 30
        while not snapshot.exists() or _count(snapshot, "SELECT count(*) FROM metrics") < 20:
            assert time.monotonic() < deadline, "no snapshot while the job runs"
            time.sleep(0.2)
        seen_while_running = _count(snapshot, "SELECT count(*) FROM metrics")
        process.terminate()
        assert process.wait(timeout=30) == 143
    finally:
        process.kill()
        process.wait()
    live = tmp_path / ".mantik" / "offline" / "mlruns.db"
    final = _count(snapshot, "SELECT count(*) FROM metrics")
    assert final >= seen_while_running
    assert final == _count(live, "SELECT count(*) FROM metrics")  # nothing logged is missing
    assert (tmp_path / ".mantik" / "exit-code").read_text().strip() == "143"


def test_online_config_never_probes_nor_switches(tmp_path: Path) -> None:
    job = spec({"Tracking": "online"}, workdir=tmp_path)
    script = render_wrapper(job)
    assert "export MANTIK_TRACKING=online" in script
    assert "curl -sf" not in script and "sqlite:///" not in script


def test_a_store_that_takes_long_to_copy_is_copied_less_often(
    monkeypatch: Any, tmp_path: Path
) -> None:
    """The copy holds the job's writes back: at most a tenth of the time goes into it."""
    from mantik.server.compute.offline.node import offline_snapshot

    def slow_copy(live: str, target: str) -> None:
        until = time.monotonic() + 0.05
        while time.monotonic() < until:  # time.sleep is the one recorded below
            pass

    pauses: list[float] = []

    def recorded_sleep(seconds: float) -> None:
        pauses.append(seconds)
        if len(pauses) == 2:
            raise KeyboardInterrupt  # the wrapper's TERM, in short

    monkeypatch.setattr(offline_snapshot, "snapshot", slow_copy)
    monkeypatch.setattr(offline_snapshot.time, "sleep", recorded_sleep)
    with contextlib.suppress(KeyboardInterrupt):
        offline_snapshot.every("live.db", "snapshot.db", seconds=0.1)
    assert all(p >= 0.45 for p in pauses), pauses  # 9 times the 0.05 s copy, not 0.1 s
    pauses.clear()

    monkeypatch.setattr(offline_snapshot, "snapshot", lambda live, target: None)
    with contextlib.suppress(KeyboardInterrupt):
        offline_snapshot.every("live.db", "snapshot.db", seconds=10)
    assert pauses == [10, 10]  # a quick copy: the configured period
