"""``mantik admin users create`` makes the user known to MLflow's permission database
without importing ``mlflow.server`` (which builds MLflow's whole server app: seconds), and
MLflow's own store reads what it wrote (issue 17, item 5)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from mantik import _mlflow_internals as mlflow_internals


def _create(
    data_dir: Path, *args: str, importtime: bool = False
) -> subprocess.CompletedProcess[str]:
    flags = ["-X", "importtime"] if importtime else []
    return subprocess.run(
        [sys.executable, *flags, "-m", "mantik.cli", "admin", "users", "create", *args,
         "--data-dir", str(data_dir)],
        capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip


def _imported(importtime_stderr: str) -> set[str]:
    return {
        line.rsplit("|", 1)[1].strip()
        for line in importtime_stderr.splitlines()
        if line.startswith("import time:") and "|" in line
    }


def test_users_create_does_not_import_mlflow_server(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    _create(data_dir, "first")  # a fresh data dir: MLflow makes its database (slow, once)
    result = _create(data_dir, "second", "--admin", importtime=True)
    assert "Created user 'second' (admin)" in result.stdout
    imported = _imported(result.stderr)
    assert "mantik.server.platform" in imported  # the measurement saw the command's imports
    assert not {m for m in imported if m == "mlflow.server" or m.startswith("mlflow.server.")}

    store = mlflow_internals.open_permission_store(f"sqlite:///{data_dir / 'auth.db'}")
    try:
        assert store.get_user("first").is_admin is False
        assert store.get_user("second").is_admin is True
    finally:
        store.engine.dispose()


def test_the_written_user_is_one_mlflow_signs_in_and_updates(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'auth.db'}"
    assert not mlflow_internals.write_auth_user(uri, "nobody", "x" * 16, is_admin=False)
    store = mlflow_internals.open_permission_store(uri)  # MLflow makes the database
    try:
        assert mlflow_internals.write_auth_user(uri, "ada", "Secret-pass-123", is_admin=False)
        assert store.authenticate_user("ada", "Secret-pass-123")
        assert not store.authenticate_user("ada", "wrong")
        # Again, as admin: the flag changes, the password stays.
        assert mlflow_internals.write_auth_user(uri, "ada", "Other-pass-456", is_admin=True)
        assert store.get_user("ada").is_admin is True
        assert store.authenticate_user("ada", "Secret-pass-123")
        assert [u.username for u in store.list_users()] == ["ada"]
    finally:
        store.engine.dispose()
