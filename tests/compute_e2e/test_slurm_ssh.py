"""SLURM over SSH as the user's own login: Debian's OpenSSH server on a loopback port in
front of the real SLURM, two real accounts (one signs in with a key, one with a password)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import mlflow
import pytest
from sqlalchemy import update

import mantik
from mantik.server.compute.jobs import SiteCredentials, SshLogin
from mantik.server.models import ComputeJob, OfflineSync
from tests.support.offline_job import TRAIN, central_points, count_pushed_points
from tests.support.platform import JOB_PYTHON, PlatformProcess, free_port, start_platform
from tests.support.services import require_slurm
from tests.support.sshd import Login, Sshd, keypair, login_account, start_sshd

SITE = "ssh-cluster"


@dataclass(frozen=True)
class SshSetup:
    platform: PlatformProcess
    sshd: Sshd
    alice: Login  # with her key
    bob: Login  # with his password
    other_key: str  # a host key that is not the server's
    carol: Login  # her login shell finds no SLURM


@pytest.fixture(scope="module")
def ssh_setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshSetup]:
    require_slurm()
    root = tmp_path_factory.mktemp("ssh")
    root.chmod(0o711)
    with start_sshd(root / "sshd") as sshd:
        tag = uuid.uuid4().hex[:6]
        alice, bob = login_account(sshd, f"sshalice{tag}"), login_account(sshd, f"sshbob{tag}")
        carol = login_account(sshd, f"sshcarol{tag}")
        profile = Path(f"/home/{carol.name}/.bash_profile")
        profile.write_text("export PATH=/nowhere\n")  # a login node without SLURM for her
        other_key = keypair(root / "not-the-host")
        endpoint = {"host": "127.0.0.1", "port": sshd.port}
        common = {"driver": "slurm", "partition": "debug", "job_path": [str(JOB_PYTHON / "bin")]}
        pinned = {**endpoint, "host_key": sshd.host_key}
        closed = f"http://127.0.0.1:{free_port()}"  # nobody listens: the node is "offline"
        listed = [
            {"name": SITE, "ssh": pinned, **common},
            {"name": "ssh-rekeyed", "ssh": {**endpoint, "host_key": other_key}, **common},
            {"name": "ssh-offline", "ssh": pinned, "tracking_uri": closed, **common},
        ]
        sites = root / "sites.yaml"
        sites.write_text(json.dumps({"sites": listed}))
        data_dir = root / "platform"
        data_dir.mkdir()
        env = {"MANTIK_SITES_FILE": str(sites), "MANTIK_OFFLINE_SNAPSHOT_SECONDS": "2"}
        with start_platform(data_dir, env=env, workers=1) as platform:
            yield SshSetup(platform, sshd, alice, bob, other_key, carol)


def _signed_in(setup: SshSetup, monkeypatch: pytest.MonkeyPatch, **ssh: str) -> str:
    user = setup.platform.new_user("ssh")
    for name, value in {
        "MANTIK_USERNAME": user[0],
        "MANTIK_PASSWORD": user[1],
        "MLFLOW_TRACKING_URI": setup.platform.url,
        **ssh,
    }.items():
        monkeypatch.setenv(name, value)
    mantik.init_tracking()
    return str(mlflow.create_experiment(f"ssh-{uuid.uuid4().hex[:8]}"))


def _config(site: str = SITE) -> dict[str, object]:
    return {"ComputeSite": site, "Resources": {"Runtime": "5m"}}


def test_a_job_runs_as_the_ssh_login_and_tracks(
    ssh_setup: SshSetup, monkeypatch: pytest.MonkeyPatch, make_project: Callable[..., Path]
) -> None:
    alice = ssh_setup.alice
    experiment = _signed_in(
        ssh_setup, monkeypatch, MANTIK_SSH_USER=alice.name, MANTIK_SSH_KEY_FILE=str(alice.key_file)
    )
    command = (
        'echo "whoami=$(id -un)"; python -c \'import mlflow; mlflow.log_metric("over_ssh", 1.5)\''
    )
    client = mantik.ComputeBackendClient.from_env()
    submitted = client.submit_run(experiment, {}, make_project(command, _config()), "backend.json")
    info = client.wait(submitted.run_id, timeout=180, interval=1)  # status over SSH
    log = client.get_logs(submitted.run_id)
    assert info.run_status == "FINISHED", log
    assert f"whoami={alice.name}" in log
    run = mlflow.get_run(submitted.run_id)
    assert run.data.metrics["over_ssh"] == 1.5

    # The login went through the platform's hands only.
    key = alice.key_file.read_text().strip().splitlines()[1]  # a line of the private key
    platform = ssh_setup.platform
    texts = [platform.log_text(), str(run.data.params), str(run.data.tags)]
    for root in (platform.data_dir, platform.jobs_dir, Path(f"/home/{alice.name}/mantik-jobs")):
        texts += [p.read_text(errors="replace") for p in root.rglob("*") if p.is_file()]
    assert not any(key in text for text in texts)


def test_a_password_login_submits_and_cancels(
    ssh_setup: SshSetup, monkeypatch: pytest.MonkeyPatch, make_project: Callable[..., Path]
) -> None:
    bob = ssh_setup.bob
    experiment = _signed_in(
        ssh_setup, monkeypatch, MANTIK_SSH_USER=bob.name, MANTIK_SSH_PASSWORD=bob.password
    )
    client = mantik.ComputeBackendClient.from_env()
    project = make_project("echo started; sleep 300", _config())
    submitted = client.submit_run(experiment, {}, project, "backend.json")
    client.cancel(submitted.run_id)
    info = client.wait(submitted.run_id, timeout=120, interval=1)
    assert info.run_status == "KILLED", client.get_logs(submitted.run_id)
    assert bob.password not in ssh_setup.platform.log_text()


def test_a_wrong_key_is_refused_and_leaves_no_run(
    ssh_setup: SshSetup,
    monkeypatch: pytest.MonkeyPatch,
    make_project: Callable[..., Path],
    tmp_path: Path,
) -> None:
    stranger = tmp_path / "stranger"
    keypair(stranger)
    experiment = _signed_in(
        ssh_setup,
        monkeypatch,
        MANTIK_SSH_USER=ssh_setup.alice.name,
        MANTIK_SSH_KEY_FILE=str(stranger),
    )
    client = mantik.ComputeBackendClient.from_env()
    with pytest.raises(mantik.MantikError) as refused:
        client.submit_run(experiment, {}, make_project("true", _config()), "backend.json")
    assert refused.value.status_code == 401
    assert "refused the SSH login" in str(refused.value)
    assert mlflow.search_runs([experiment], output_format="list") == []


def test_a_host_key_mismatch_is_refused_before_any_command(
    ssh_setup: SshSetup, monkeypatch: pytest.MonkeyPatch, make_project: Callable[..., Path]
) -> None:
    alice = ssh_setup.alice
    experiment = _signed_in(
        ssh_setup, monkeypatch, MANTIK_SSH_USER=alice.name, MANTIK_SSH_KEY_FILE=str(alice.key_file)
    )
    accepted_before = ssh_setup.sshd.log_text().count("Accepted ")
    client = mantik.ComputeBackendClient.from_env()
    project = make_project("true", _config("ssh-rekeyed"))
    with pytest.raises(mantik.MantikError) as refused:
        client.submit_run(experiment, {}, project, "backend.json")
    message = str(refused.value)
    assert refused.value.status_code == 502
    assert "did not show the host key the admin pinned" in message
    assert message.count("SHA256:") == 2  # what it showed, what the site expects
    assert ssh_setup.sshd.log_text().count("Accepted ") == accepted_before  # no login at all
    assert mlflow.search_runs([experiment], output_format="list") == []


def test_an_offline_job_is_synced_over_sftp_exactly_once(
    ssh_setup: SshSetup, monkeypatch: pytest.MonkeyPatch, make_project: Callable[..., Path]
) -> None:
    alice, points, keys = ssh_setup.alice, 2000, 10
    experiment = _signed_in(
        ssh_setup, monkeypatch, MANTIK_SSH_USER=alice.name, MANTIK_SSH_KEY_FILE=str(alice.key_file)
    )
    config = {**_config("ssh-offline"), "Tracking": "auto"}
    project = make_project(f"python train.py {points} 4 {keys}", config, {"train.py": TRAIN})
    client = mantik.ComputeBackendClient.from_env()
    submitted = client.submit_run(experiment, {}, project, "backend.json")
    info = client.wait(submitted.run_id, timeout=240, interval=1)  # each status: over SSH
    assert (info.run_status, info.tracking) == ("FINISHED", "offline"), client.get_logs(
        submitted.run_id
    )
    assert central_points(submitted.run_id) == points + 1  # + the NaN point
    history = mlflow.MlflowClient().get_metric_history(submitted.run_id, f"m{keys - 1}")
    assert sorted(m.step for m in history) == list(range(points // keys))

    # A second full sync over SFTP (as if the platform forgot what it read) adds nothing.
    service = ssh_setup.platform.compute_service()
    with service.db.session() as session:
        session.execute(
            update(OfflineSync)
            .where(OfflineSync.run_id == submitted.run_id)
            .values(snapshot_mtime_ns=None, final_at=None)
        )
        job = session.get(ComputeJob, submitted.run_id)
    assert job is not None
    pushed = count_pushed_points(service.runs.client)
    login = SshLogin(alice.name, private_key=alice.key_file.read_text())
    credentials = SiteCredentials("", "", login)
    service.offline.sync(job, final=True, wait=True, status="FINISHED", credentials=credentials)
    assert sum(pushed) == 0
    assert central_points(submitted.run_id) == points + 1


def test_sbatch_off_the_login_path_and_an_unknown_partition_say_how_to_fix(
    ssh_setup: SshSetup, monkeypatch: pytest.MonkeyPatch, make_project: Callable[..., Path]
) -> None:
    carol, alice = ssh_setup.carol, ssh_setup.alice
    experiment = _signed_in(
        ssh_setup, monkeypatch, MANTIK_SSH_USER=carol.name, MANTIK_SSH_KEY_FILE=str(carol.key_file)
    )
    with pytest.raises(mantik.MantikError) as no_slurm:
        mantik.ComputeBackendClient.from_env().submit_run(
            experiment, {}, make_project("true", _config()), "backend.json"
        )
    assert no_slurm.value.status_code == 502
    assert "sbatch is not on the login node's PATH" in str(no_slurm.value)

    monkeypatch.setenv("MANTIK_SSH_USER", alice.name)
    monkeypatch.setenv("MANTIK_SSH_KEY_FILE", str(alice.key_file))
    config = {"ComputeSite": SITE, "Resources": {"Runtime": "5m", "Queue": "nosuch"}}
    with pytest.raises(mantik.MantikError) as no_partition:
        mantik.ComputeBackendClient.from_env().submit_run(
            experiment, {}, make_project("true", config), "backend.json"
        )
    assert no_partition.value.status_code == 400
    assert "partition" in str(no_partition.value) and "debug" in str(no_partition.value)
    assert mlflow.search_runs([experiment], output_format="list") == []


def test_listing_runs_observes_all_going_jobs_over_one_connection(
    ssh_setup: SshSetup, monkeypatch: pytest.MonkeyPatch, make_project: Callable[..., Path]
) -> None:
    alice = ssh_setup.alice
    experiment = _signed_in(
        ssh_setup, monkeypatch, MANTIK_SSH_USER=alice.name, MANTIK_SSH_KEY_FILE=str(alice.key_file)
    )
    client = mantik.ComputeBackendClient.from_env()
    project = make_project("sleep 120", _config())
    runs = [client.submit_run(experiment, {}, project, "backend.json") for _ in range(3)]
    logins = ssh_setup.sshd.log_text().count("Accepted publickey")
    listed = client.list_runs(experiment_id=experiment)
    assert ssh_setup.sshd.log_text().count("Accepted publickey") == logins + 1
    assert {r.run_id for r in listed} == {r.run_id for r in runs}
    assert all(r.state in ("PENDING", "RUNNING") for r in listed), [r.state for r in listed]
    for run in runs:
        client.cancel(run.run_id)
