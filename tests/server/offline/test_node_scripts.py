"""The node scripts on their own (the wrapper goldens only name them): they run on any
Python 3.8+, the snapshot with the standard library alone, and what the snapshot writes
is what the platform reads."""

from __future__ import annotations

import ast
import sqlite3
import sys
from pathlib import Path

import pytest

from mantik.server.compute.job_folder import BLOCKS, SNAPSHOT
from mantik.server.compute.offline.block_digests import Manifest
from mantik.server.compute.offline.node import offline_snapshot, source


def _imports(tree: ast.Module) -> set[str]:
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize(
    ("name", "allowed"), [("offline_snapshot", set()), ("offline_init", {"mlflow"})]
)
def test_runs_on_python_3_8_without_mantik(name: str, allowed: set[str]) -> None:
    tree = ast.parse(source(name), feature_version=(3, 8))
    foreign = _imports(tree) - set(sys.stdlib_module_names) - allowed
    assert not foreign, f"{name}.py imports {foreign}"


def test_snapshot_publishes_what_the_platform_reads(tmp_path: Path) -> None:
    live = tmp_path / "mlruns.db"
    with sqlite3.connect(live) as database:
        database.execute("CREATE TABLE points (value REAL)")
        database.executemany("INSERT INTO points VALUES (?)", [(i,) for i in range(5000)])
    database.close()
    offline_snapshot.snapshot(str(live), str(tmp_path / SNAPSHOT))
    published = Manifest.read(tmp_path / BLOCKS)
    assert published == Manifest.of_file(tmp_path / SNAPSHOT)
    with sqlite3.connect(tmp_path / SNAPSHOT) as copy:
        assert copy.execute("SELECT count(*) FROM points").fetchone() == (5000,)
    copy.close()
