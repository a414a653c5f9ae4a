"""A job that floods its output: the log stays bounded, its end readable, the platform's
memory flat while many read it."""

from __future__ import annotations

import contextlib
import re
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import mlflow
import pytest

import mantik
from tests.compute_e2e.conftest import sign_in
from tests.support.platform import PlatformProcess, start_platform

MiB = 1024 * 1024
CAP = 30 * MiB  # the platform's MANTIK_JOB_LOG_MAX_BYTES here
FLOOD = 300_000_000
MARKER = re.compile(r"\n\[mantik: (\d+) bytes of output left out here\]\n")
_FLOOD_COMMAND = f"yes 'a line of output' | head -c {FLOOD}; echo"


@pytest.fixture(scope="module")
def capped_platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PlatformProcess]:
    env = {"MANTIK_JOB_LOG_MAX_BYTES": str(CAP)}
    with start_platform(tmp_path_factory.mktemp("platform-logs"), env=env) as process:
        yield process


def _folder_bytes(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file() and not p.is_symlink())


def test_a_flood_keeps_head_and_tail_and_following_goes_on_past_the_cap(
    capped_platform: PlatformProcess,
    monkeypatch: pytest.MonkeyPatch,
    make_project: Callable[..., Path],
    tmp_path: Path,
) -> None:
    ticks = "; ".join(f"echo tick-{i}; sleep 0.5" for i in range(1, 7))
    command = f"{_FLOOD_COMMAND}; {ticks}; echo the-last-line"
    project = make_project(command, {"ComputeSite": "local"})
    sign_in(monkeypatch, capped_platform)
    client = mantik.ComputeBackendClient.from_env()
    submitted = client.submit_run(mlflow.create_experiment("flood"), {}, project, "backend.json")
    followed = "".join(client.follow_logs(submitted.run_id, interval=0.5))
    info = client.get_status(submitted.run_id)
    assert info.run_status == "FINISHED", client.get_logs(submitted.run_id, tail_bytes=4096)
    # Following read on by offset after the log passed its cap: every new line, in order.
    at = [followed.rindex(f"tick-{i}\n") for i in range(1, 7)]
    assert at == sorted(at) and followed.endswith("tick-6\nthe-last-line\n")
    assert len(followed) < FLOOD / 2  # what the follower fell behind on was left out
    # Bounded on disk: no copy on the job's stdout, no upload file left.
    workdir = capped_platform.jobs_dir / "local" / submitted.run_id
    assert _folder_bytes(workdir / ".mantik") < CAP + MiB
    # The whole log as kept: the beginning, one marker for what was left out, the end.
    log = client.get_logs(submitted.run_id)
    assert log.startswith("a line of output\n") and log.endswith("the-last-line\n")
    dropped = MARKER.findall(log)
    assert len(dropped) == 1
    printed = FLOOD + 1 + sum(len(f"tick-{i}\n") for i in range(1, 7)) + len("the-last-line\n")
    assert len(log) - len(MARKER.search(log)[0]) + int(dropped[0]) == printed  # type: ignore[index]
    assert len(log) <= CAP + 100
    assert client.get_logs(submitted.run_id, tail_bytes=14) == "the-last-line\n"
    assert client.get_logs(submitted.run_id, offset=2, length=6) == "line o"
    # The run's artifact is the log as kept, not the flood.
    artifact = Path(
        mlflow.artifacts.download_artifacts(
            run_id=submitted.run_id, artifact_path="mantik/job.log", dst_path=str(tmp_path)
        )
    )
    assert artifact.stat().st_size == len(log.encode())
    assert artifact.read_text().endswith("tick-6\nthe-last-line\n")


def test_a_log_request_in_two_ways_at_once_is_refused(
    capped_platform: PlatformProcess,
    monkeypatch: pytest.MonkeyPatch,
    make_project: Callable[..., Path],
) -> None:
    project = make_project("echo hello", {"ComputeSite": "local"})
    sign_in(monkeypatch, capped_platform)
    client = mantik.ComputeBackendClient.from_env()
    submitted = client.submit_run(mlflow.create_experiment("twoways"), {}, project, "backend.json")
    with pytest.raises(mantik.PlatformError, match="tail_bytes, or with offset") as refused:
        client.get_logs(submitted.run_id, tail_bytes=10, offset=3)
    assert refused.value.status_code == 400
    client.wait(submitted.run_id, timeout=120, interval=0.5)


def _children() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    return children


def _tree_rss(root: int) -> int:
    """The resident bytes of ``root`` and all its descendants (its uvicorn workers)."""
    children, total, todo = _children(), 0, [root]
    while todo:
        pid = todo.pop()
        todo += children.get(pid, [])
        with contextlib.suppress(OSError, IndexError):  # gone meanwhile
            total += int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * 4096
    return total


def test_platform_memory_stays_flat_under_16_log_readers(
    capped_platform: PlatformProcess,
    monkeypatch: pytest.MonkeyPatch,
    make_project: Callable[..., Path],
) -> None:
    project = make_project(_FLOOD_COMMAND, {"ComputeSite": "local"})
    user = sign_in(monkeypatch, capped_platform)
    client = mantik.ComputeBackendClient.from_env()
    submitted = client.submit_run(mlflow.create_experiment("readers"), {}, project, "backend.json")
    assert client.wait(submitted.run_id, timeout=300, interval=0.5).run_status == "FINISHED"
    http = capped_platform.client(user)
    path = f"/compute-backend/runs/{submitted.run_id}/logs"

    def read_whole() -> int:
        received = 0
        with http.stream("GET", path, timeout=300) as response:
            assert response.status_code == 200
            for chunk in response.iter_bytes():
                received += len(chunk)
        return received

    assert (
        read_whole() > 2 * CAP // 3
    )  # head and one part at least; warm: the first request's imports are not growth
    pid = capped_platform.process.pid
    baseline, peak, done = _tree_rss(pid), [0], threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], _tree_rss(pid))
            time.sleep(0.05)

    sampler = threading.Thread(target=sample)
    sampler.start()
    sizes: list[int] = []
    readers = [threading.Thread(target=lambda: sizes.append(read_whole())) for _ in range(16)]
    for reader in readers:
        reader.start()
    for reader in readers:
        reader.join()
    done.set()
    sampler.join()
    assert len(sizes) == 16 and min(sizes) > 2 * CAP // 3
    growth = (peak[0] - baseline) / MiB
    print(f"platform RSS {baseline / MiB:.0f} MiB, peak growth {growth:.1f} MiB, 16 readers")
    assert growth < 50
