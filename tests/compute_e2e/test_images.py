"""Apptainer images through the platform's content-addressed cache, on the local site.

Real Apptainer cannot run here: jobs find a stand-in ``apptainer`` on their PATH (put there
with PreRunCommands) that checks the run line and the image path, then runs the command
(see tests/support/apptainer.py).
"""

from __future__ import annotations

import hashlib
import os
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import mlflow
import pytest

import mantik
from tests.compute_e2e.conftest import sign_in
from tests.support import apptainer
from tests.support.platform import PlatformProcess, start_platform
from tests.support.projects import zipped

MiB = 1024 * 1024


def image_file(path: Path, size: int, seed: int) -> str:
    """Write ``size`` bytes of seeded content; return their sha256."""
    block = hashlib.sha256(str(seed).encode()).digest() * (MiB // 32)
    with path.open("wb") as handle:
        for _ in range(size // MiB):
            handle.write(block)
    return hashlib.sha256(path.read_bytes()).hexdigest()


def bearer(platform: PlatformProcess, user: tuple[str, str]) -> dict[str, str]:
    answer = httpx.post(
        f"{platform.url}/api/mantik/tokens/create",
        json={"username": user[0], "password": user[1]},
    )
    return {"Authorization": f"Bearer {answer.json()['AccessToken']}"}


def cached(platform: PlatformProcess, site: str = "local") -> set[str]:
    """Names in the site's cache folder, temporary uploads included."""
    root = platform.image_cache(site)
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()} - {".lock"}


def put(platform: PlatformProcess, headers: dict[str, str], digest: str, body: bytes) -> Any:
    return httpx.put(
        f"{platform.url}/compute-backend/images/{digest}", content=body, headers=headers
    )


def head(platform: PlatformProcess, headers: dict[str, str], digest: str) -> int:
    url = f"{platform.url}/compute-backend/images/{digest}"
    return httpx.head(url, headers=headers).status_code


def image_config(bin_dir: Path, **extra: Any) -> dict[str, Any]:
    return {
        "ComputeSite": "local",
        "PreRunCommands": [f"export PATH={bin_dir}:$PATH"],
        **extra,
    }


def test_image_is_sent_once_and_run_with_apptainer(
    sqlite_platform: PlatformProcess,
    monkeypatch: pytest.MonkeyPatch,
    make_project: Callable[..., Path],
    tmp_path: Path,
) -> None:
    sign_in(monkeypatch, sqlite_platform)
    experiment = mlflow.create_experiment("image-once")
    # (No ${…} in an MLproject command: braces are its parameter syntax.)
    command = 'echo "in container: run=$MLFLOW_RUN_ID tracking=$MLFLOW_TRACKING_URI"'
    command += '; echo "token=$MLFLOW_TRACKING_TOKEN" | cut -c1-12'
    command += '; echo "greeting=$GREETING host_only=[$HOST_ONLY]"'
    config = image_config(
        tmp_path / "bin",
        SingularityImage="images/image.sif",
        Environment={"GREETING": "hi"},
        ApptainerOptions=["-B", "/tmp:/data"],
    )
    config["PreRunCommands"].append("export HOST_ONLY=1")
    project = make_project(command, config)
    (project / "images").mkdir()
    digest = image_file(project / "images" / "image.sif", 8 * MiB, seed=1)
    image = sqlite_platform.image_cache("local") / f"{digest}.sif"
    apptainer.runner(tmp_path / "bin", expected_image=image)
    client = mantik.ComputeBackendClient.from_env()
    seen: list[tuple[int, int]] = []

    first = client.submit_run(
        experiment, {}, project, "backend.json", progress=lambda s, t: seen.append((s, t))
    )
    assert first.image_bytes_sent == 8 * MiB
    assert seen[-1][0] == seen[-1][1] > 8 * MiB  # one bar: the image, then the project zip
    info = client.wait(first.run_id, timeout=120, interval=0.5)
    log = client.get_logs(first.run_id)
    assert info.run_status == "FINISHED", log
    assert f"stand-in apptainer: run --cleanenv -B /tmp:/data {image}" in log
    assert f"in container: run={first.run_id} tracking=http" in log
    assert "token=eyJ" in log  # a JWT: the job token reached the container
    assert "greeting=hi host_only=[]" in log  # --cleanenv: only what is passed explicitly
    job_project = sqlite_platform.jobs_dir / "local" / first.run_id / "project"
    assert not (job_project / "images" / "image.sif").exists()  # not in the project zip

    second = client.submit_run(experiment, {}, project, "backend.json")
    assert second.image_bytes_sent == 0
    assert client.wait(second.run_id, timeout=120, interval=0.5).run_status == "FINISHED"


def test_docker_env_project_is_converted_sent_and_run(
    sqlite_platform: PlatformProcess,
    monkeypatch: pytest.MonkeyPatch,
    make_project: Callable[..., Path],
    tmp_path: Path,
) -> None:
    sign_in(monkeypatch, sqlite_platform)
    experiment = mlflow.create_experiment("from-docker")
    # The client converts with stand-in docker and apptainer; the job runs a stand-in too.
    calls = tmp_path / "calls.txt"
    apptainer.docker(tmp_path / "client-bin", calls, "acme/train:v1", "cd" * 32)
    apptainer.builder(tmp_path / "client-bin", calls)
    monkeypatch.setenv("PATH", f"{tmp_path / 'client-bin'}:{os.environ['PATH']}")
    apptainer.runner(tmp_path / "job-bin", cache_dir=sqlite_platform.image_cache("local"))
    project = make_project("echo converted", image_config(tmp_path / "job-bin"))
    (project / "MLproject").write_text(
        "name: d\ndocker_env:\n  image: acme/train:v1\nentry_points:\n  main:\n"
        "    command: echo converted\n"
    )
    client = mantik.ComputeBackendClient.from_env()
    submitted = client.submit_run(experiment, {}, project, "backend.json")
    built = b"SIF built from docker-daemon://acme/train:v1\n"
    assert submitted.image_bytes_sent == len(built)
    info = client.wait(submitted.run_id, timeout=120, interval=0.5)
    log = client.get_logs(submitted.run_id)
    assert info.run_status == "FINISHED", log
    digest = hashlib.sha256(built).hexdigest()
    assert (
        f"stand-in apptainer: run --cleanenv  {sqlite_platform.image_cache('local')}/{digest}.sif"
        in log
    )
    assert "converted" in log


def test_interrupted_or_wrong_upload_leaves_nothing_and_a_retry_succeeds(
    sqlite_platform: PlatformProcess, tmp_path: Path
) -> None:
    user = sqlite_platform.new_user("images")
    headers = bearer(sqlite_platform, user)
    body = os.urandom(6 * MiB)
    digest = hashlib.sha256(body).hexdigest()
    before = cached(sqlite_platform)

    # Half the body, then the connection closes.
    host, port = sqlite_platform.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port))) as sock:
        request = (
            f"PUT /compute-backend/images/{digest} HTTP/1.1\r\nHost: {host}\r\n"
            f"Authorization: {headers['Authorization']}\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        sock.sendall(request.encode() + body[: len(body) // 2])
        time.sleep(0.5)  # the server is now writing the temporary file
    deadline = time.monotonic() + 10
    while cached(sqlite_platform) != before:
        assert time.monotonic() < deadline, cached(sqlite_platform)
        time.sleep(0.2)
    assert head(sqlite_platform, headers, digest) == 404

    # The whole body, under someone else's digest.
    wrong = put(sqlite_platform, headers, hashlib.sha256(b"other").hexdigest(), body)
    assert wrong.status_code == 400
    assert "Nothing was stored; send it again" in wrong.json()["detail"]
    assert cached(sqlite_platform) == before

    assert put(sqlite_platform, headers, digest, body).status_code == 201
    assert head(sqlite_platform, headers, digest) == 200
    assert cached(sqlite_platform) == before | {f"{digest}.sif"}
    # Not signed in: nothing to see, nothing to store.
    assert httpx.head(f"{sqlite_platform.url}/compute-backend/images/{digest}").status_code == 401


def test_missing_remote_image_or_unknown_digest_is_refused_without_a_run(
    sqlite_platform: PlatformProcess,
    monkeypatch: pytest.MonkeyPatch,
    make_project: Callable[..., Path],
    tmp_path: Path,
) -> None:
    user = sign_in(monkeypatch, sqlite_platform)
    experiment = mlflow.create_experiment("remote-missing")
    project = make_project("true", image_config(tmp_path, RemoteImage="/p/images/none.sif"))
    client = mantik.ComputeBackendClient.from_env()
    with pytest.raises(mantik.PlatformError, match=r"RemoteImage '/p/images/none\.sif' does not"):
        client.submit_run(experiment, {}, project, "backend.json")

    unknown = "0" * 64
    (project / "backend.json").write_text('{"ComputeSite": "local"}')
    answer = httpx.post(
        f"{sqlite_platform.url}/compute-backend/submit/{experiment}",
        data={"image_digest": unknown, "unicore_backend_config_path": "backend.json"},
        files={"mlproject_zip": ("p.zip", zipped(project), "application/zip")},
        headers=bearer(sqlite_platform, user),
    )
    assert answer.status_code == 400
    assert f"no image with sha256 {unknown}" in answer.json()["detail"]
    assert mlflow.search_runs([experiment], run_view_type=3, output_format="list") == []


# --- limits: a platform with a 3 MiB image limit and a 5 MiB cache ----------------------


@pytest.fixture(scope="module")
def small_platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PlatformProcess]:
    env = {"MANTIK_MAX_IMAGE_BYTES": str(3 * MiB), "MANTIK_IMAGE_CACHE_BYTES": str(5 * MiB)}
    with start_platform(tmp_path_factory.mktemp("small-images"), env=env, workers=1) as p:
        yield p


def test_image_over_the_limit_is_413_naming_remote_image(
    small_platform: PlatformProcess,
    monkeypatch: pytest.MonkeyPatch,
    make_project: Callable[..., Path],
    tmp_path: Path,
) -> None:
    user = sign_in(monkeypatch, small_platform)
    body = os.urandom(4 * MiB)
    answer = put(small_platform, bearer(small_platform, user), "a" * 64, body)
    assert answer.status_code == 413
    assert "RemoteImage" in answer.json()["detail"]
    assert "max_image_bytes" in answer.json()["detail"]
    assert cached(small_platform) == set()

    experiment = mlflow.create_experiment("too-big")
    project = make_project("true", image_config(tmp_path, SingularityImage="big.sif"))
    (project / "big.sif").write_bytes(body)
    client = mantik.ComputeBackendClient.from_env()
    with pytest.raises(mantik.PlatformError, match="set RemoteImage") as info:
        client.submit_run(experiment, {}, project, "backend.json")
    assert info.value.status_code == 413
    assert mlflow.search_runs([experiment], run_view_type=3, output_format="list") == []


def test_least_recently_used_images_go_but_not_those_of_unfinished_jobs(
    small_platform: PlatformProcess,
    monkeypatch: pytest.MonkeyPatch,
    make_project: Callable[..., Path],
    tmp_path: Path,
) -> None:
    user = sign_in(monkeypatch, small_platform)
    headers = bearer(small_platform, user)
    images = {name: os.urandom(2 * MiB) for name in "abcde"}
    digest = {name: hashlib.sha256(body).hexdigest() for name, body in images.items()}

    def upload(name: str) -> None:
        assert put(small_platform, headers, digest[name], images[name]).status_code == 201
        time.sleep(0.05)  # distinct modification times

    def use(name: str) -> None:  # HEAD counts as a use
        assert head(small_platform, headers, digest[name]) == 200
        time.sleep(0.05)

    def held() -> set[str]:  # from the folder: asking would count as a use
        names = {path.removesuffix(".sif") for path in cached(small_platform)}
        return {name for name in images if digest[name] in names}

    upload("a")
    upload("b")
    use("a")
    upload("c")  # 6 MiB > 5 MiB: b, the least recently used, goes
    assert held() == {"a", "c"}

    # A job on image c keeps it, even when it is the least recently used.
    experiment = mlflow.create_experiment("eviction")
    apptainer.runner(tmp_path / "bin")
    project = make_project("sleep 60", image_config(tmp_path / "bin", SingularityImage="c.sif"))
    (project / "c.sif").write_bytes(images["c"])
    client = mantik.ComputeBackendClient.from_env()
    job = client.submit_run(experiment, {}, project, "backend.json")
    assert job.image_bytes_sent == 0
    use("a")
    upload("d")  # over the limit: c is the oldest but in use, so a goes
    assert held() == {"c", "d"}
    client.cancel(job.run_id)
    assert client.wait(job.run_id, timeout=60, interval=0.5).run_status == "KILLED"
    upload("e")  # c is free again, and the least recently used
    assert held() == {"d", "e"}


def test_image_inside_the_zip_still_runs_for_0_1_clients(
    sqlite_platform: PlatformProcess,
    monkeypatch: pytest.MonkeyPatch,
    make_project: Callable[..., Path],
    tmp_path: Path,
) -> None:
    user = sign_in(monkeypatch, sqlite_platform)
    experiment = mlflow.create_experiment("image-in-zip")
    apptainer.runner(tmp_path / "bin")
    project = make_project("echo ran", image_config(tmp_path / "bin", SingularityImage="i.sif"))
    (project / "i.sif").write_bytes(b"an image")
    answer = httpx.post(  # as mantik 0.1.x sends it: the image inside the project zip
        f"{sqlite_platform.url}/compute-backend/submit/{experiment}",
        data={"unicore_backend_config_path": "backend.json"},
        files={"mlproject_zip": ("p.zip", zipped(project), "application/zip")},
        headers=bearer(sqlite_platform, user),
    )
    assert answer.status_code == 201, answer.text
    run_id = answer.json()["run_id"]
    client = mantik.ComputeBackendClient.from_env()
    info = client.wait(run_id, timeout=120, interval=0.5)
    log = client.get_logs(run_id)
    assert info.run_status == "FINISHED", log
    assert f"--cleanenv  {sqlite_platform.jobs_dir}/local/{run_id}/project/i.sif" in log
