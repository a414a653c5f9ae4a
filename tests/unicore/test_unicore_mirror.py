"""The platform's copy of a UNICORE job's offline files, fetched through the file API of the
gateway (which stands in for UNICORE/X): after the first snapshot only changed blocks travel,
and whatever does not match ends in a full, correct copy."""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from pyunicore import client as unicore
from pyunicore.credentials import UsernamePassword

from mantik.server.compute.offline.mirror import BLOCKS, OfflineMirror
from mantik.server.compute.offline.node.offline_snapshot import snapshot
from mantik.server.compute.offline.unicore_mirror import UnicoreFolder
from tests.support.unicore_gateway import UnicoreGateway
from tests.unicore.conftest import UNICORE_PASSWORD, UNICORE_USER


@dataclass
class RemoteJob:
    """A job on the site whose folder the test writes as the node would."""

    storage: unicore.Storage
    offline: Path
    step: int = 0

    @property
    def live(self) -> Path:
        return self.offline / "mlruns.db"

    @property
    def snapshot(self) -> Path:
        return self.offline / "snapshot.db"

    def log(self, steps: int) -> None:
        """Points as a training loop logs them: ten keys per step, with an index."""
        with sqlite3.connect(self.live) as db:
            db.execute(
                "CREATE TABLE IF NOT EXISTS metrics (key TEXT, value REAL, timestamp INTEGER, "
                "step INTEGER, PRIMARY KEY (key, timestamp, step))"
            )
            db.executemany(
                "INSERT INTO metrics VALUES (?, ?, ?, ?)",
                [
                    (f"m{k}", s + k / 10, 1_700_000_000_000 + s, s)
                    for s in range(self.step, self.step + steps)
                    for k in range(10)
                ],
            )
        db.close()
        self.step += steps
        snapshot(str(self.live), str(self.snapshot))


@pytest.fixture
def job(gateway: UnicoreGateway) -> Iterator[RemoteJob]:
    credential = UsernamePassword(UNICORE_USER, UNICORE_PASSWORD)
    transport = unicore.Transport(credential, use_security_sessions=False)
    created = unicore.Client(transport, gateway.base_url).new_job({"Name": "mirror"})
    job_id = str(created.resource_url).rstrip("/").rsplit("/", 1)[-1]
    workdir = gateway.job(job_id).workdir
    (workdir / ".mantik" / "offline").mkdir(parents=True)
    (workdir / ".mantik" / "tracking").write_text("offline\n")
    yield RemoteJob(
        unicore.Storage(transport, gateway.storage_url(job_id)), workdir / ".mantik" / "offline"
    )


def _mirror(job: RemoteJob, target: Path, *, final: bool = False) -> OfflineMirror:
    mirror = OfflineMirror(UnicoreFolder(job.storage), target)
    mirror.run(final=final)
    return mirror


def test_after_the_first_copy_only_changed_blocks_travel(job: RemoteJob, tmp_path: Path) -> None:
    target = tmp_path / "mirror"
    job.log(20_000)
    first = _mirror(job, target)
    copy = target / "offline" / "snapshot.db"
    assert copy.read_bytes() == job.snapshot.read_bytes()
    size = job.snapshot.stat().st_size
    assert first.bytes >= size

    job.log(2_000)  # the job goes on: a tenth more points
    second = _mirror(job, target)
    assert copy.read_bytes() == job.snapshot.read_bytes()
    grown = job.snapshot.stat().st_size
    print(f"snapshot {size} → {grown} bytes; fetched {second.bytes} bytes the second time")
    assert second.bytes < 0.4 * grown

    unchanged = _mirror(job, target)  # nothing new on the site: nothing fetched
    assert unchanged.bytes == 0


def test_digests_that_do_not_match_give_a_full_correct_copy(job: RemoteJob, tmp_path: Path) -> None:
    target = tmp_path / "mirror"
    job.log(5_000)
    _mirror(job, target)
    copy = target / "offline" / "snapshot.db"
    before = job.snapshot.read_bytes()

    # The node published the digests of a new snapshot, not yet the snapshot itself.
    job.log(500)
    job.snapshot.write_bytes(before)
    fallback = _mirror(job, target, final=True)
    assert copy.read_bytes() == before
    assert fallback.bytes >= len(before)

    # Digests that are no digests at all.
    job.log(500)
    (job.offline / BLOCKS).write_bytes(b'{"size": 1, "block": 1}\nxx')
    _mirror(job, target, final=True)
    assert copy.read_bytes() == job.snapshot.read_bytes()

    # And the copy keeps syncing by blocks afterwards.
    job.log(500)
    again = _mirror(job, target)
    assert copy.read_bytes() == job.snapshot.read_bytes()
    assert again.bytes < job.snapshot.stat().st_size


def test_artifacts_still_being_written_wait_for_the_next_fetch(
    job: RemoteJob, tmp_path: Path
) -> None:
    artifacts = job.offline / "artifacts" / "1" / "run" / "artifacts"
    artifacts.mkdir(parents=True)
    (artifacts / "done.txt").write_text("written a while ago")
    os.utime(artifacts / "done.txt", (time.time() - 60, time.time() - 60))
    (artifacts / "model.bin").write_bytes(b"half of a model")  # the job is writing it
    job.log(10)
    target = tmp_path / "mirror"
    mirrored = target / "offline" / "artifacts" / "1" / "run" / "artifacts"

    _mirror(job, target)
    assert (mirrored / "done.txt").read_text() == "written a while ago"
    assert not (mirrored / "model.bin").exists()

    (artifacts / "model.bin").write_bytes(b"the whole model")
    _mirror(job, target, final=True)  # the job ended: everything, as it is
    assert (mirrored / "model.bin").read_bytes() == b"the whole model"
