"""Reading a capped job log by byte offset: the head file, the rotating parts, the marker."""

from __future__ import annotations

from pathlib import Path

from mantik.server.compute.job_log import KEPT, LocalFolder, Window, read


def _job(tmp_path: Path, head: bytes, parts: dict[int, bytes], part_bytes: int = 10) -> Path:
    """A job folder as the wrapper leaves it: ``head`` in job.log, the parts kept."""
    mantik = tmp_path / ".mantik"
    mantik.mkdir(parents=True)
    (mantik / "job.log").write_bytes(head)
    for index, data in parts.items():
        (mantik / f"job.log.tail.{part_bytes}.{index:09d}").write_bytes(data)
    return tmp_path


def _text(tmp_path: Path, window: Window = KEPT) -> tuple[str, int]:
    log = read(LocalFolder(tmp_path), window)
    return log.text(), log.end


def test_a_log_within_its_head_reads_whole(tmp_path: Path) -> None:
    job = _job(tmp_path, b"line 1\nline 2\n", {})
    assert _text(job) == ("line 1\nline 2\n", 14)
    assert _text(job, Window(offset=7)) == ("line 2\n", 14)
    assert _text(job, Window(tail_bytes=3)) == (" 2\n", 14)


def test_dropped_parts_read_as_one_marker_and_offsets_stay(tmp_path: Path) -> None:
    # 5 head bytes, then parts of 10: parts 1..3 dropped, 4 and 5 kept (5 still filling).
    job = _job(tmp_path, b"HEAD\n", {4: b"3333333333", 5: b"4444\n"})
    size = 5 + 4 * 10 + 5
    text, end = _text(job)
    assert text == "HEAD\n\n[mantik: 30 bytes of output left out here]\n3333333333" + "4444\n"
    assert end == size
    # By offset: a byte keeps its offset for good; one in the dropped span reads the marker.
    assert _text(job, Window(offset=5 + 3 * 10 + 4)) == ("333333" + "4444\n", size)
    assert _text(job, Window(offset=20)) == (
        "\n[mantik: 15 bytes of output left out here]\n33333333334444\n",
        size,
    )
    assert _text(job, Window(offset=size)) == ("", size)
    assert _text(job, Window(offset=size + 100)) == ("", size)
    assert _text(job, Window(offset=0, length=3)) == ("HEA", 3)
    assert _text(job, Window(tail_bytes=7)) == ("334444\n", size)
    log = read(LocalFolder(job), Window())
    assert (log.size, log.dropped) == (size, 30)


def test_a_part_dropped_while_it_is_read_becomes_a_marker(tmp_path: Path) -> None:
    job = _job(tmp_path, b"H", {1: b"0000000000", 2: b"1"})
    log = read(LocalFolder(job), Window())
    (job / ".mantik" / "job.log.tail.10.000000001").unlink()  # the wrapper rotated meanwhile
    assert log.text() == "H\n[mantik: 10 bytes of output left out here]\n1"


def test_symlinked_parts_expose_nothing(tmp_path: Path) -> None:
    secret = tmp_path / "key.pem"
    secret.write_text("PRIVATE KEY")
    job = _job(tmp_path / "job", b"H", {})
    (job / ".mantik" / "job.log.tail.10.000000001").symlink_to(secret)
    assert "PRIVATE" not in read(LocalFolder(job), Window()).text()
