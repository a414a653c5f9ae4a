"""The guide's path: ComputeBackendClient → platform → pyunicore → UNICORE gateway → SLURM.

The gateway (tests/support/unicore_gateway.py) stands in for UNICORE/X, which cannot run
here; it speaks the REST subset pyunicore uses and really runs jobs on the local SLURM.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import mlflow
import pytest

import mantik
from tests.support import apptainer
from tests.support.platform import PlatformProcess, start_platform
from tests.support.unicore_gateway import UnicoreGateway
from tests.unicore.conftest import UNICORE_PASSWORD, UNICORE_USER, sign_in_with_unicore

pytestmark = pytest.mark.slurm


@pytest.fixture(scope="module")
def unicore_platform(
    gateway: UnicoreGateway, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[PlatformProcess]:
    data_dir = tmp_path_factory.mktemp("platform-unicore")
    sites = data_dir / "sites.yaml"
    sites.write_text(
        f"sites:\n  - name: juwels\n    driver: unicore\n    url: {gateway.base_url}\n"
        # The same UNICORE, keeping each user's images on SCRATCH (one copy per digest).
        f"  - name: juwels-scratch\n    driver: unicore\n    url: {gateway.base_url}\n"
        "    image_storage: SCRATCH\n"
    )
    with start_platform(data_dir, env={"MANTIK_SITES_FILE": str(sites)}) as platform:
        yield platform


@pytest.fixture
def project(demo: Path, gateway: UnicoreGateway) -> Path:
    """The demo project with the guide's backend config (values valid on the test SLURM)."""
    config = {
        "UnicoreApiUrl": gateway.base_url,
        "Environment": {"TEST_ENV_VAR": "variable value"},
        "Resources": {
            "Runtime": "12h",
            "Queue": "debug",
            "Nodes": 1,
            "CPUs": 1,
            "CPUsPerNode": 1,
            "Memory": "12GiB",
        },
    }
    (demo / "unicore-config.json").write_text(json.dumps(config))
    return demo


@pytest.fixture
def unicore_env(monkeypatch: pytest.MonkeyPatch, unicore_platform: PlatformProcess) -> str:
    return sign_in_with_unicore(monkeypatch, unicore_platform)


def test_guide_example_runs_through_unicore(
    unicore_env: str, project: Path, gateway: UnicoreGateway, unicore_platform: PlatformProcess
) -> None:
    client = mantik.ComputeBackendClient.from_env()
    submitted = client.submit_run(
        experiment_id=unicore_env,
        mlflow_parameters={"alpha": 0.4},
        mlproject_path=project,
        backend_config_path="unicore-config.json",
    )
    assert submitted.site == "juwels"
    job = gateway.wait_for(submitted.job_id, timeout=120)
    assert job.status == "SUCCESSFUL", (job.status_message, job.log)
    assert job.description["Resources"]["Memory"] == "12G"
    assert job.description["Resources"]["TotalCPUs"] == "1"
    assert job.description["Project"] == "training2"
    info = client.wait(submitted.run_id, timeout=60, interval=0.5)
    assert info.run_status == "FINISHED"
    run = mlflow.get_run(submitted.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params["alpha"] == "0.4"
    assert "rmse" in run.data.metrics
    assert "trained ElasticNet" in client.get_logs(submitted.run_id)

    # The UNICORE password is nowhere: not in a file the job or the platform wrote, not in
    # a log line, not in the run.
    texts = [unicore_platform.log_text(), str(run.data.params), str(run.data.tags)]
    for root in (job.workdir, unicore_platform.data_dir, unicore_platform.jobs_dir):
        texts += [p.read_text(errors="replace") for p in root.rglob("*") if p.is_file()]
    assert not any(UNICORE_PASSWORD in text for text in texts)


def test_failure_and_cancel_reach_the_run(
    unicore_env: str, project: Path, gateway: UnicoreGateway
) -> None:
    client = mantik.ComputeBackendClient.from_env()
    failing = client.submit_run(unicore_env, {}, project, "unicore-config.json", entry_point="fail")
    sleeping = client.submit_run(
        unicore_env, {"seconds": 300}, project, "unicore-config.json", entry_point="sleep"
    )
    assert client.wait(failing.run_id, timeout=120, interval=0.5).run_status == "FAILED"
    assert mlflow.get_run(failing.run_id).info.status == "FAILED"
    gateway.wait_for(sleeping.job_id, statuses={"RUNNING"}, timeout=60)
    client.cancel(sleeping.run_id)
    info = client.wait(sleeping.run_id, timeout=60, interval=0.5)
    assert info.run_status == "KILLED"
    assert mlflow.get_run(sleeping.run_id).info.status == "KILLED"
    assert gateway.wait_for(sleeping.job_id, timeout=30).status == "FAILED"


def test_bad_unicore_credentials_leave_no_run(
    unicore_env: str, project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MANTIK_UNICORE_PASSWORD", "wrong")
    client = mantik.ComputeBackendClient.from_env()
    with pytest.raises(mantik.AuthenticationError, match="refused the credentials") as info:
        client.submit_run(unicore_env, {}, project, "unicore-config.json")
    assert info.value.status_code == 401
    assert mlflow.search_runs([unicore_env], run_view_type=3, output_format="list") == []


def test_missing_unicore_variables_are_listed(
    unicore_env: str, project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MANTIK_UNICORE_PASSWORD")
    monkeypatch.delenv("MANTIK_UNICORE_PROJECT")
    client = mantik.ComputeBackendClient.from_env()
    with pytest.raises(mantik.MissingEnvironmentError) as info:
        client.submit_run(unicore_env, {}, project, "unicore-config.json")
    assert info.value.missing == ["MANTIK_UNICORE_PASSWORD", "MANTIK_UNICORE_PROJECT"]


class _Listener:
    """A TCP listener that records whether anything connected."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen()
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.connections += 1
            conn.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.sock.close()


def test_urls_off_the_allow_list_are_never_contacted(
    unicore_env: str, project: Path, gateway: UnicoreGateway
) -> None:
    listener = _Listener()
    allowed = gateway.base_url  # http://127.0.0.1:PORT/JUWELS/rest/core
    path = allowed.split(f":{gateway.port}", 1)[1]
    tricks = [
        f"http://127.0.0.1:{listener.port}{path}",  # another port
        f"http://127.0.0.1:{gateway.port}@127.0.0.1:{listener.port}{path}",  # userinfo
        f"http://localhost:{listener.port}{path}",  # another name for the host
        f"http://[::1]:{listener.port}{path}",  # IP literal
        f"http://0x7f000001:{listener.port}{path}",
        allowed.replace("/JUWELS/", "/OTHER/"),  # another site behind the same gateway
    ]
    client = mantik.ComputeBackendClient.from_env()
    requests_before = len(gateway.requests)
    try:
        for url in tricks:
            config = json.loads((project / "unicore-config.json").read_text())
            config["UnicoreApiUrl"] = url
            (project / "trick.json").write_text(json.dumps(config))
            with pytest.raises(mantik.PlatformError, match="not a site this platform may use"):
                client.submit_run(unicore_env, {}, project, "trick.json")
    finally:
        listener.close()
    assert listener.connections == 0
    assert len(gateway.requests) == requests_before
    assert mlflow.search_runs([unicore_env], run_view_type=3, output_format="list") == []


def test_image_is_sent_once_and_staged_with_each_job(
    unicore_env: str, project: Path, gateway: UnicoreGateway, tmp_path: Path
) -> None:
    # The platform keeps the image in its cache (UNICORE storage is per job here) and the
    # driver streams it into each job's folder; the job runs a stand-in apptainer (real
    # Apptainer cannot run here) that checks it is handed that copy.
    apptainer.runner(tmp_path / "bin", expected_image=Path("../mantik-image.sif"))
    config = json.loads((project / "unicore-config.json").read_text())
    config["SingularityImage"] = "image.sif"
    config["PreRunCommands"] = [f"export PATH={tmp_path / 'bin'}:$PATH"]
    (project / "image-config.json").write_text(json.dumps(config))
    image = os.urandom(3 * 1024 * 1024)
    (project / "image.sif").write_bytes(image)
    client = mantik.ComputeBackendClient.from_env()
    sent = []
    for _ in range(2):
        submitted = client.submit_run(
            unicore_env, {"seconds": 0}, project, "image-config.json", entry_point="sleep"
        )
        job = gateway.wait_for(submitted.job_id, timeout=120)
        log = (job.workdir / ".mantik" / "job.log").read_text()
        assert job.status == "SUCCESSFUL", log
        assert "stand-in apptainer: run --cleanenv  ../mantik-image.sif" in log
        assert (job.workdir / "mantik-image.sif").read_bytes() == image
        assert not (job.workdir / "project" / "image.sif").exists()
        sent.append(submitted.image_bytes_sent)
    assert sent == [len(image), 0]


def test_image_storage_holds_one_copy_per_digest_linked_into_jobs(
    unicore_env: str, project: Path, gateway: UnicoreGateway, tmp_path: Path
) -> None:
    # The site keeps images on the user's SCRATCH storage: the driver streams the image
    # there once and each job links it (stand-in apptainer: real Apptainer cannot run here).
    apptainer.runner(tmp_path / "bin", expected_image=Path("../mantik-image.sif"))
    config = json.loads((project / "unicore-config.json").read_text())
    config.update(
        ComputeSite="juwels-scratch",
        SingularityImage="image.sif",
        PreRunCommands=[f"export PATH={tmp_path / 'bin'}:$PATH"],
    )
    (project / "scratch-config.json").write_text(json.dumps(config))
    image = os.urandom(2 * 1024 * 1024)
    (project / "image.sif").write_bytes(image)
    digest = hashlib.sha256(image).hexdigest()
    stored = gateway.work_root / "storages" / "SCRATCH" / UNICORE_USER / "mantik-images"
    client = mantik.ComputeBackendClient.from_env()
    for _ in range(2):
        submitted = client.submit_run(
            unicore_env, {"seconds": 0}, project, "scratch-config.json", entry_point="sleep"
        )
        job = gateway.wait_for(submitted.job_id, timeout=120)
        log = (job.workdir / ".mantik" / "job.log").read_text()
        assert job.status == "SUCCESSFUL", log
        assert (job.workdir / "mantik-image.sif").resolve() == stored / f"{digest}.sif"
    assert [p.name for p in stored.iterdir()] == [f"{digest}.sif"]
    assert (stored / f"{digest}.sif").read_bytes() == image
    uploads = [p for m, p in gateway.requests if m == "PUT" and "/storages/SCRATCH/" in p]
    assert len(uploads) == 1, uploads
