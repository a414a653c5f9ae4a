"""The UNICORE gateway the tests of this folder share (one per test module)."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator

import pytest

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
