"""A platform that is not root runs jobs as their accounts through the rule that
``mantik admin sudoers`` prints (Debian's sudo), and nothing more."""

from __future__ import annotations

import json
import os
import pwd
import shutil
import stat
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import mlflow
import pytest

import mantik
from tests.support.accounts import os_account
from tests.support.platform import JOB_PYTHON, free_port
from tests.support.services import unavailable


@pytest.fixture
def sudo_platform() -> Iterator[tuple[str, Path, str, str]]:
    """The platform as an unprivileged account, from Debian's Python; alice's jobs run as
    another account. Yields its URL, jobs dir, alice's name and her job account."""
    if os.geteuid() != 0 or shutil.which("sudo") is None:
        unavailable("sudo and root (to make the accounts and install the rule)")
    if not (JOB_PYTHON / "bin" / "python").exists():
        unavailable(f"the job Python {JOB_PYTHON} (scripts/job-python.sh)")
    tag = uuid.uuid4().hex[:6]
    platform_account = os_account(f"mtkp{tag}")
    job_account = os_account(f"mtkj{tag}")
    alice = f"alice-{tag}"
    base = Path(tempfile.mkdtemp(prefix="mantik-sudo-"))
    base.chmod(0o711)
    data, jobs, home = base / "data", base / "jobs", base / "home"
    for folder in (data, jobs, home):
        folder.mkdir()
        os.chown(folder, platform_account.pw_uid, platform_account.pw_gid)
    sites = base / "sites.yaml"
    site = {
        "name": "local",
        "driver": "local",
        "run_as": "account",
        "accounts": {alice: job_account.pw_name},
    }
    sites.write_text(json.dumps({"sites": [site]}))
    rule = subprocess.run(
        [
            sys.executable,
            "-m",
            "mantik.cli",
            "admin",
            "sudoers",
            "--data-dir",
            str(data),
            "--sites-file",
            str(sites),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert rule.returncode == 0, rule.stderr
    assert f"{platform_account.pw_name} ALL=({job_account.pw_name}, !root)" in rule.stdout
    rule_file = Path(f"/etc/sudoers.d/mantik-test-{tag}")
    rule_file.write_text(rule.stdout)
    rule_file.chmod(0o440)
    checked = subprocess.run(["visudo", "-cf", str(rule_file)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr

    port = free_port()
    env = {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": str(home),
        "MANTIK_DATA_DIR": str(data),
        "MANTIK_JOBS_DIR": str(jobs),
        "MANTIK_SITES_FILE": str(sites),
        "MANTIK_JOB_PATH": str(JOB_PYTHON / "bin"),
    }
    as_platform = [
        "setpriv",
        f"--reuid={platform_account.pw_uid}",
        f"--regid={platform_account.pw_gid}",
        "--init-groups",
        "--",
    ]
    python = str(JOB_PYTHON / "bin" / "python")
    log = (base / "platform.log").open("wb")
    process = subprocess.Popen(
        [*as_platform, python, "-m", "mantik.cli", "server", "start", "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            assert process.poll() is None, (base / "platform.log").read_text()
            try:
                if httpx.get(f"{url}/api/mantik/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, (base / "platform.log").read_text()
            time.sleep(0.3)
        created = subprocess.run(
            [
                *as_platform,
                python,
                "-m",
                "mantik.cli",
                "admin",
                "users",
                "create",
                alice,
                "--temporary-password",
                "Temp-alice-1!x",
                "--data-dir",
                str(data),
            ],
            env=env,
            capture_output=True,
            text=True,
        )
        assert created.returncode == 0, created.stderr
        changed = httpx.post(
            f"{url}/api/mantik/password",
            json={"username": alice, "password": "Temp-alice-1!x", "new_password": "Pw-alice-9?x"},
        )
        assert changed.status_code == 204, changed.text
        yield url, jobs, alice, job_account.pw_name
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()
        rule_file.unlink()
        shutil.rmtree(base, ignore_errors=True)


def test_a_platform_with_only_the_printed_rule_runs_jobs_as_the_account(
    sudo_platform: tuple[str, Path, str, str],
    monkeypatch: pytest.MonkeyPatch,
    make_project: Callable[..., Path],
) -> None:
    url, jobs, alice, account = sudo_platform
    monkeypatch.setenv("MANTIK_USERNAME", alice)
    monkeypatch.setenv("MANTIK_PASSWORD", "Pw-alice-9?x")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", url)
    mantik.init_tracking()
    experiment = str(mlflow.create_experiment("sudo"))
    client = mantik.ComputeBackendClient.from_env()
    project = make_project('echo "whoami=$(id -un)"; sleep 1', {"ComputeSite": "local"})
    submitted = client.submit_run(experiment, {}, project, "backend.json")
    info = client.wait(submitted.run_id, timeout=120, interval=0.5)
    log = client.get_logs(submitted.run_id)  # read by the platform through its group
    assert info.run_status == "FINISHED", log
    assert f"whoami={account}" in log
    folder = jobs / "local" / submitted.run_id
    assert pwd.getpwuid(folder.stat().st_uid).pw_name == account
    assert stat.S_IMODE(folder.stat().st_mode) & 0o007 == 0  # nothing for other accounts
    token = folder / ".mantik" / "job-token"
    assert stat.S_IMODE(token.stat().st_mode) == 0o600
