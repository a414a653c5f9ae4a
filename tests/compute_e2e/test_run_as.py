"""Jobs run as their users' OS accounts (real accounts from useradd), never as the platform.

Each job runs ``probe.sh``: it prints who it is and tries to read what must stay out of its
reach (the platform's keys and databases, another user's job folder, the platform's
environment); then writes a file, which must be its account's.
"""

from __future__ import annotations

import json
import os
import pwd
import stat
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import mlflow
import pytest

import mantik
from tests.support.accounts import os_account, processes_of
from tests.support.platform import PlatformProcess, start_platform
from tests.support.services import require_slurm, unavailable

PROBE = r"""
echo "whoami=$(id -un 2>/dev/null || echo none) uid=$(id -u)"
IFS=: read -ra targets <<< "$PROBE"
for t in "${targets[@]}"; do
  if [ -d "$t" ]; then read_it=(ls "$t"); else read_it=(cat "$t"); fi
  if "${read_it[@]}" >/dev/null 2>&1; then echo "READ $t"; else echo "DENIED $t"; fi
done
echo written > written-by-job
"""


@pytest.fixture(autouse=True)
def _as_root() -> None:
    if os.geteuid() != 0:
        unavailable("jobs under other accounts (the platform must run as root: CI does)")


def _secrets(platform: PlatformProcess) -> list[Path]:
    data = platform.data_dir
    return [
        data,
        data / "keys",
        data / "keys" / "mlflow-auth.ini",
        data / "mantik.db",
        data / "mlflow.db",
        data / "auth.db",
        data / "artifacts",
        Path(f"/proc/{platform.process.pid}/environ"),
    ]


def _submit(
    platform: PlatformProcess,
    user: tuple[str, str],
    monkeypatch: pytest.MonkeyPatch,
    project: Path,
    experiment: str | None = None,
) -> tuple[mantik.ComputeBackendClient, mantik.SubmittedRun]:
    monkeypatch.setenv("MANTIK_USERNAME", user[0])
    monkeypatch.setenv("MANTIK_PASSWORD", user[1])
    monkeypatch.setenv("MLFLOW_TRACKING_URI", platform.url)
    mantik.init_tracking()
    experiment = experiment or str(mlflow.create_experiment(f"run-as-{uuid.uuid4().hex[:8]}"))
    client = mantik.ComputeBackendClient.from_env()
    return client, client.submit_run(experiment, {}, project, "backend.json")


def _probe_project(
    make_project: Callable[..., Path], targets: list[Path], command: str = "bash probe.sh"
) -> Path:
    config = {"ComputeSite": "local", "Environment": {"PROBE": ":".join(map(str, targets))}}
    return make_project(command, config, {"probe.sh": PROBE})


def _finished_log(client: mantik.ComputeBackendClient, run_id: str) -> str:
    info = client.wait(run_id, timeout=180, interval=0.5)
    log = client.get_logs(run_id)
    assert info.run_status == "FINISHED", log
    return log


@pytest.fixture
def mapped(tmp_path: Path) -> Iterator[tuple[PlatformProcess, dict[str, str]]]:
    """A platform whose ``local`` site maps two users to two accounts; a third is unmapped."""
    tag = uuid.uuid4().hex[:6]
    users = {"alice": f"alice-{tag}", "bob": f"bob-{tag}", "carol": f"carol-{tag}"}
    accounts = {users["alice"]: f"mtka{tag}", users["bob"]: f"mtkb{tag}"}
    for account in accounts.values():
        os_account(account)
    sites = tmp_path / "sites.yaml"
    site = {"name": "local", "driver": "local", "run_as": "account", "accounts": accounts}
    sites.write_text(json.dumps({"sites": [site]}))
    data_dir = tmp_path / "platform"
    data_dir.mkdir()
    with start_platform(data_dir, env={"MANTIK_SITES_FILE": str(sites)}, workers=1) as platform:
        yield (
            platform,
            {
                **users,
                "alice_account": accounts[users["alice"]],
                "bob_account": accounts[users["bob"]],
            },
        )


def test_each_job_runs_as_its_account_and_reaches_nothing_else(
    mapped: tuple[PlatformProcess, dict[str, str]],
    monkeypatch: pytest.MonkeyPatch,
    make_project: Callable[..., Path],
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    platform, names = mapped
    bob = platform.new_user(username=names["bob"])
    alice = platform.new_user(username=names["alice"])
    # Bob's job: a program, a background loop and a nohup'ed child, all in its tree.
    sleeper = "sleep 300 & nohup sleep 301 >/dev/null 2>&1 & while true; do sleep 1; done"
    bob_dir = tmp_path_factory.mktemp("bob")
    bob_client, bob_run = _submit(platform, bob, monkeypatch, _make_in(bob_dir, sleeper))
    bob_folder = platform.jobs_dir / "local" / bob_run.run_id
    deadline = time.monotonic() + 60
    while bob_client.get_status(bob_run.run_id).state != "RUNNING":
        assert time.monotonic() < deadline
        time.sleep(0.3)

    targets = [*_secrets(platform), bob_folder, bob_folder / ".mantik" / "job-token"]
    alice_client, alice_run = _submit(
        platform, alice, monkeypatch, _probe_project(make_project, targets)
    )
    log = _finished_log(alice_client, alice_run.run_id)
    account = pwd.getpwnam(names["alice_account"])
    assert f"whoami={account.pw_name} uid={account.pw_uid}" in log
    for target in targets:
        assert f"DENIED {target}" in log, log
    folder = platform.jobs_dir / "local" / alice_run.run_id
    written = folder / "project" / "written-by-job"
    assert (written.stat().st_uid, written.stat().st_gid) == (account.pw_uid, account.pw_gid)
    assert folder.stat().st_uid == account.pw_uid
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    token = folder / ".mantik" / "job-token"
    assert (token.stat().st_uid, stat.S_IMODE(token.stat().st_mode)) == (account.pw_uid, 0o600)
    for name in ("mantik.db", "mlflow.db", "auth.db"):
        assert stat.S_IMODE((platform.data_dir / name).stat().st_mode) == 0o600, name

    # Cancel reaches everything bob's job started, as bob's account.
    bob_uid = pwd.getpwnam(names["bob_account"]).pw_uid
    assert any("sleep 301" in p for p in processes_of(bob_uid))
    monkeypatch.setenv("MANTIK_USERNAME", bob[0])
    monkeypatch.setenv("MANTIK_PASSWORD", bob[1])
    bob_client.cancel(bob_run.run_id)
    info = bob_client.wait(bob_run.run_id, timeout=60, interval=0.5)
    assert info.run_status == "KILLED"
    deadline = time.monotonic() + 20
    while processes_of(bob_uid) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert processes_of(bob_uid) == []


def _make_in(root: Path, command: str) -> Path:
    (root / "MLproject").write_text(
        "name: test\nentry_points:\n  main:\n    command: " + json.dumps(command) + "\n"
    )
    (root / "backend.json").write_text(json.dumps({"ComputeSite": "local"}))
    return root


def test_a_user_without_an_account_is_refused_and_leaves_no_run(
    mapped: tuple[PlatformProcess, dict[str, str]],
    monkeypatch: pytest.MonkeyPatch,
    make_project: Callable[..., Path],
) -> None:
    platform, names = mapped
    carol = platform.new_user(username=names["carol"])
    monkeypatch.setenv("MANTIK_USERNAME", carol[0])
    monkeypatch.setenv("MANTIK_PASSWORD", carol[1])
    monkeypatch.setenv("MLFLOW_TRACKING_URI", platform.url)
    mantik.init_tracking()
    experiment = str(mlflow.create_experiment("carol"))
    client = mantik.ComputeBackendClient.from_env()
    with pytest.raises(mantik.MantikError) as refused:
        client.submit_run(
            experiment, {}, make_project("true", {"ComputeSite": "local"}), "backend.json"
        )
    assert refused.value.status_code == 403
    assert "no OS account" in str(refused.value) and "accounts:" in str(refused.value)
    assert mlflow.search_runs([experiment], output_format="list") == []
    assert client.list_runs(experiment_id=experiment) == []


def test_as_root_without_a_sites_file_each_user_gets_a_uid_of_its_own(
    sqlite_platform: PlatformProcess,
    monkeypatch: pytest.MonkeyPatch,
    make_project: Callable[..., Path],
) -> None:
    uids = []
    for _ in range(2):
        user = sqlite_platform.new_user("own-uid")  # no OS account of that name
        for _ in range(2):
            project = _probe_project(make_project, _secrets(sqlite_platform))
            client, run = _submit(sqlite_platform, user, monkeypatch, project)
            log = _finished_log(client, run.run_id)
            for target in _secrets(sqlite_platform):
                assert f"DENIED {target}" in log, log
            uids.append(int(log.split(" uid=")[1].split()[0]))
    assert uids[0] == uids[1] and uids[2] == uids[3]  # a user keeps its uid
    assert uids[0] != uids[2]  # never two users on one uid
    assert all(uid >= 2_100_000_000 for uid in uids)  # MANTIK_JOB_UID_RANGE, not root's


def test_mode_platform_lets_only_listed_users_submit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, make_project: Callable[..., Path]
) -> None:
    listed = f"listed-{uuid.uuid4().hex[:6]}"
    sites = tmp_path / "sites.yaml"
    site = {"name": "local", "driver": "local", "run_as": "platform", "submitters": [listed]}
    sites.write_text(json.dumps({"sites": [site]}))
    data_dir = tmp_path / "platform"
    data_dir.mkdir()
    with start_platform(data_dir, env={"MANTIK_SITES_FILE": str(sites)}, workers=1) as platform:
        user = platform.new_user(username=listed)
        project = make_project("echo whoami=$(id -un)", {"ComputeSite": "local"})
        client, run = _submit(platform, user, monkeypatch, project)
        assert "whoami=root" in _finished_log(client, run.run_id)  # the platform's own

        other = platform.new_user("unlisted")
        monkeypatch.setenv("MANTIK_USERNAME", other[0])
        monkeypatch.setenv("MANTIK_PASSWORD", other[1])
        mantik.init_tracking()
        experiment = str(mlflow.create_experiment("unlisted"))
        with pytest.raises(mantik.MantikError) as refused:
            mantik.ComputeBackendClient.from_env().submit_run(
                experiment, {}, project, "backend.json"
            )
        assert refused.value.status_code == 403
        assert "submitters" in str(refused.value)
        assert mlflow.search_runs([experiment], output_format="list") == []


def test_slurm_jobs_run_as_the_users_account(
    sqlite_platform: PlatformProcess,
    monkeypatch: pytest.MonkeyPatch,
    make_project: Callable[..., Path],
) -> None:
    require_slurm()
    user = sqlite_platform.new_user("slurm-as", os_account=True)
    config = {
        "ComputeSite": "slurm",
        "Resources": {"Queue": "debug", "Runtime": "5m"},
        "Environment": {"PROBE": ":".join(map(str, _secrets(sqlite_platform)))},
    }
    project = make_project("bash probe.sh", config, {"probe.sh": PROBE})
    client, run = _submit(sqlite_platform, user, monkeypatch, project)
    log = _finished_log(client, run.run_id)
    assert f"whoami={user[0]} uid={pwd.getpwnam(user[0]).pw_uid}" in log
    for target in _secrets(sqlite_platform):
        assert f"DENIED {target}" in log, log
