"""The UNICORE gateway the tests of this folder share (one per test module)."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator

import mlflow
import pytest

from tests.compute_e2e.conftest import sign_in
from tests.support.platform import PlatformProcess
from tests.support.services import require_slurm
from tests.support.unicore_gateway import UnicoreGateway

UNICORE_USER, UNICORE_PASSWORD = "judoor1", "unicore-Pass-42!"


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[UnicoreGateway]:
    require_slurm()
    # The site's nodes have a Python with MLflow (in production: the project's container).
    path = os.pathsep.join([os.path.dirname(sys.executable), os.environ["PATH"]])
    with UnicoreGateway(
        {UNICORE_USER: UNICORE_PASSWORD},
        tmp_path_factory.mktemp("unicore"),
        site="JUWELS",
        job_environment={"PATH": path, "HOME": os.environ.get("HOME", "/root")},
        storages=("SCRATCH",),
    ) as server:
        yield server


def sign_in_with_unicore(monkeypatch: pytest.MonkeyPatch, platform: PlatformProcess) -> str:
    """Sign in to ``platform`` with UNICORE credentials in the environment, as the guide
    says; returns a fresh experiment of the user."""
    sign_in(monkeypatch, platform)
    monkeypatch.setenv("MANTIK_UNICORE_USERNAME", UNICORE_USER)
    monkeypatch.setenv("MANTIK_UNICORE_PASSWORD", UNICORE_PASSWORD)
    monkeypatch.setenv("MANTIK_UNICORE_PROJECT", "training2")
    return str(mlflow.create_experiment(f"unicore-{time.time_ns()}"))
