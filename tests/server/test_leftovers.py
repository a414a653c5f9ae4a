"""Scratch left by a crash is told from scratch in use by the name's process mark — also
on hosts whose names hold dots, as HPC login nodes' do (login01.juwels.fz-juelich.de)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from mantik.server.compute import leftovers


@pytest.fixture(params=["vm", "login01.juwels.fz-juelich.de"])
def host(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setattr(leftovers.socket, "gethostname", lambda: request.param)
    leftovers.process_mark.cache_clear()
    yield request.param
    leftovers.process_mark.cache_clear()


def test_a_dead_process_scratch_is_swept_and_a_live_one_kept(host: str, tmp_path: Path) -> None:
    dead = f"{host}_999999999_1"
    staging = tmp_path / leftovers.STAGING
    staging.mkdir()
    abandoned_upload = tmp_path / f"{leftovers.UPLOAD_PREFIX}{dead}_0a1b2c3d4e5f.zip"
    abandoned_upload.write_bytes(b"PK")
    abandoned_folder = staging / f"{dead}_5e6f7a8b9c0d"
    abandoned_folder.mkdir()
    # tempfile adds a random part of its own, underscores included (api/compute.py).
    tempfile_upload = tmp_path / f"{leftovers.UPLOAD_PREFIX}{dead}_798452204ea21_z5aes6.zip"
    tempfile_upload.write_bytes(b"PK")
    live_upload = tmp_path / leftovers.marked_name(leftovers.UPLOAD_PREFIX, "1_z5aes6.zip")
    live_upload.write_bytes(b"PK")
    live_folder = staging / leftovers.marked_name("")
    live_folder.mkdir()

    assert leftovers.sweep_scratch(tmp_path, max_age=3600) == 3
    assert not abandoned_upload.exists() and not abandoned_folder.exists()
    assert not tempfile_upload.exists()
    assert live_upload.exists() and live_folder.exists()


def test_a_name_without_a_mark_waits_for_max_age(host: str, tmp_path: Path) -> None:
    stranger = tmp_path / f"{leftovers.UPLOAD_PREFIX}something.zip"
    stranger.write_bytes(b"PK")
    assert leftovers.sweep_scratch(tmp_path, max_age=3600) == 0
    assert leftovers.sweep_scratch(tmp_path, max_age=-1) == 1
