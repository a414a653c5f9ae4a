"""A 3 GiB image end to end on the real single-node SLURM (scripts/slurm.sh), sent once.

Real Apptainer cannot run here: the job finds a stand-in ``apptainer`` on its PATH (put
there with PreRunCommands) that checks ``run --cleanenv``, that the image is a file of the
site's image cache, and runs the command (tests/support/apptainer.py).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path

import pytest

import mantik
from tests.support import apptainer
from tests.support.platform import PlatformProcess
from tests.support.services import require_slurm

pytestmark = pytest.mark.slurm

GiB = 1024**3


def test_three_gib_image_runs_on_slurm_and_moves_once(
    sqlite_platform: PlatformProcess,
    experiment: str,
    make_project: Callable[..., Path],
    tmp_path: Path,
) -> None:
    require_slurm()
    cache = sqlite_platform.image_cache("slurm")
    apptainer.runner(tmp_path / "bin", cache_dir=cache)
    config = {
        "ComputeSite": "slurm",
        "SingularityImage": "image.sif",
        "Resources": {"Runtime": "10m", "Queue": "debug"},
        "PreRunCommands": [f"export PATH={tmp_path / 'bin'}:$PATH"],
    }
    project = make_project('echo "in container: $MLFLOW_RUN_ID"', config)
    with (project / "image.sif").open("wb") as image:  # sparse, unique head
        image.write(os.urandom(1024 * 1024))
        image.truncate(3 * GiB)
    client = mantik.ComputeBackendClient.from_env()

    started = time.monotonic()
    first = client.submit_run(experiment, {}, project, "backend.json")
    first_seconds = time.monotonic() - started
    assert first.image_bytes_sent == 3 * GiB
    info = client.wait(first.run_id, timeout=180, interval=0.5)
    log = client.get_logs(first.run_id)
    assert info.run_status == "FINISHED", log
    assert f"stand-in apptainer: run --cleanenv  {cache}/" in log
    assert f"in container: {first.run_id}" in log
    (digest,) = json.loads((Path.home() / ".mantik" / "image-digests.json").read_text()).values()
    cached = cache / f"{digest}.sif"
    assert cached.stat().st_size == 3 * GiB
    assert cached.stat().st_blocks * 512 < 64 * 1024 * 1024  # the zeros stayed holes

    started = time.monotonic()
    second = client.submit_run(experiment, {}, project, "backend.json")
    second_seconds = time.monotonic() - started
    assert second.image_bytes_sent == 0
    assert second_seconds < 5, (first_seconds, second_seconds)
    assert client.wait(second.run_id, timeout=180, interval=0.5).run_status == "FINISHED"
