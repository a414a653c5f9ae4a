"""Project zips (client) and hostile-archive refusal (server)."""

from __future__ import annotations

import io
import os
import stat
import struct
import sys
import tempfile
import tracemalloc
import zipfile
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, cast

import pytest

from mantik import ConfigurationError
from mantik.compute.archive.pack import (
    ZipSummary,
    iter_project_files,
    write_project_zip,
    zip_project_to_tempfile,
)
from mantik.compute.archive.unpack import UnsafeArchive, safe_extract

MiB = 1024**2

# -- helpers -------------------------------------------------------------------------------

_opened: list[str] | None = None


def _audit(event: str, args: tuple[object, ...]) -> None:
    if _opened is not None and event == "open" and isinstance(args[0], str | bytes | os.PathLike):
        _opened.append(os.fsdecode(args[0]))


sys.addaudithook(_audit)  # audit hooks cannot be removed: it records only inside opened_files()


@pytest.fixture
def opened_files() -> Iterator[list[str]]:
    """Every path the process opens (open() and os.open()) while the test runs."""
    global _opened
    _opened = []
    try:
        yield _opened
    finally:
        _opened = None


def tree(root: Path, files: dict[str, str | bytes]) -> Path:
    for name, content in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, str):
            path.write_text(content)
        else:
            path.write_bytes(content)
    return root


def listing(root: Path, exclude: Sequence[str] = ()) -> list[str]:
    return [path.as_posix() for path in iter_project_files(root, exclude)]


@dataclass
class Raw:
    """A zip member written byte by byte, so the test controls every field an attacker does."""

    name: str
    chunks: Sequence[bytes] = (b"data",)
    method: int = zipfile.ZIP_STORED
    size: int | None = None  # declared uncompressed size; default: the stored bytes
    crc: int | None = None
    mode: int = stat.S_IFREG | 0o644
    flags: int = 0x800  # UTF-8 names
    data_of: int | None = None  # share the local record of an earlier member


def write_raw_zip(path: Path, members: Sequence[Raw], *, zip64_end: bool = False) -> Path:
    records: list[tuple[int, int, int, int]] = []
    central = []
    with path.open("wb") as out:
        for member in members:
            name = member.name.encode()
            if member.data_of is not None:
                offset, csize, size, crc = records[member.data_of]
            else:
                csize = sum(len(chunk) for chunk in member.chunks)
                size = csize if member.size is None else member.size
                crc = 0
                for chunk in member.chunks:
                    crc = zlib.crc32(chunk, crc)
                crc = crc if member.crc is None else member.crc
                offset = out.tell()
                out.write(
                    struct.pack(
                        "<4s5H3L2H", b"PK\x03\x04", 20, member.flags, member.method, 0, 33,
                        crc, csize, size, len(name), 0,
                    )
                )  # fmt: skip
                out.write(name)
                for chunk in member.chunks:
                    out.write(chunk)
            records.append((offset, csize, size, crc))
            central.append(
                struct.pack(
                    "<4s4B4H3L5H2L", b"PK\x01\x02", 20, 3, 20, 0, member.flags, member.method,
                    0, 33, crc, csize, size, len(name), 0, 0, 0, 0, member.mode << 16, offset,
                ) + name
            )  # fmt: skip
        start = out.tell()
        for entry in central:
            out.write(entry)
        end = out.tell()
        count, size, offset = len(central), end - start, start
        if zip64_end:  # the 32-bit end record then only says "see the zip64 record"
            out.write(struct.pack("<4sQ2H2L4Q", b"PK\x06\x06", 44, 45, 45, 0, 0, count, count,
                                  size, offset))  # fmt: skip
            out.write(struct.pack("<4sLQL", b"PK\x06\x07", 0, end, 1))
            count, size, offset = 0xFFFF, 0xFFFFFFFF, 0xFFFFFFFF
        out.write(struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, count, count, size, offset, 0))
    return path


def zero_bomb(gib: int = 1) -> Raw:
    """``gib`` GiB of zeros in about 1 MiB of deflate, without compressing a GiB here."""
    zeros = bytes(MiB)
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    # After a full flush the compressor forgets its history, so every further MiB of zeros
    # gives the very same bytes: compress one MiB, repeat its output.
    compressor.compress(zeros)
    compressor.flush(zlib.Z_FULL_FLUSH)
    block = compressor.compress(zeros) + compressor.flush(zlib.Z_FULL_FLUSH)
    crc = 0
    for _ in range(1024 * gib):
        crc = zlib.crc32(zeros, crc)
    chunks = [block] * (1024 * gib) + [compressor.flush()]
    return Raw("bomb.bin", chunks, zipfile.ZIP_DEFLATED, size=gib * 1024 * MiB, crc=crc)


def refused(tmp_path: Path, members: Sequence[Raw], **limits: int) -> str:
    archive = write_raw_zip(tmp_path / "evil.zip", members)
    dest = tmp_path / "out"
    with pytest.raises(UnsafeArchive) as info:
        safe_extract(archive, dest, **limits)
    assert not dest.exists() or list(dest.iterdir()) == []
    return str(info.value)


# -- walking the project -------------------------------------------------------------------


def test_files_are_sorted_and_tool_directories_skipped(tmp_path: Path) -> None:
    root = tree(
        tmp_path / "p",
        {
            "b.py": "",
            "a/z.txt": "",
            "a.txt": "",
            ".git/config": "",
            "pkg/__pycache__/m.pyc": "",
            "mlruns/0/meta.yaml": "",
            ".mantik/cache": "",
            "sub/.git": "gitdir: elsewhere",
            ".env": "",
        },
    )
    assert listing(root) == [".env", "a/z.txt", "a.txt", "b.py"]
    assert all(not path.is_absolute() for path in iter_project_files(root))


def test_exclude_globs_match_names_and_paths(tmp_path: Path) -> None:
    root = tree(
        tmp_path / "p",
        {
            "image.sif": "",
            "deep/er/image.sif": "",
            "data/raw/x.csv": "",
            "data.py": "",
            "src/data/keep.csv": "",
            "checkpoints/epoch1.pt": "",
            "models/checkpoints/epoch2.pt": "",
            "notes/checkpoints": "a file, not a directory",
            "logs/run.txt": "",
            "logs/sub/run.txt": "",
            "out": "",
            "src/out": "",
            "tmp/a.tmp": "",
            "main.py": "",
        },
    )
    exclude = ["*.sif", "data/**", "checkpoints/", "logs/*.txt", "/out", "**/*.tmp"]
    assert listing(root, exclude) == [
        "data.py",
        "logs/sub/run.txt",
        "main.py",
        "notes/checkpoints",
        "src/data/keep.csv",
        "src/out",
    ]


@pytest.mark.parametrize("bad", [["", "x"], ["/"], [3]])
def test_bad_exclude_patterns(tmp_path: Path, bad: list[object]) -> None:
    with pytest.raises(ConfigurationError, match="Exclude"):
        listing(tmp_path, cast("list[str]", bad))
    with pytest.raises(ConfigurationError, match="must be a list"):
        listing(tmp_path, "*.sif")


def test_missing_root(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="does not exist"):
        listing(tmp_path / "missing")


def test_symlinks_inside_are_stored_as_their_target(tmp_path: Path) -> None:
    root = tree(tmp_path / "p", {"real/config.yaml": "a: 1", "script.sh": "echo"})
    (root / "link.yaml").symlink_to("real/config.yaml")
    (root / "alias").symlink_to("real", target_is_directory=True)
    (root / "real" / "up").symlink_to("..", target_is_directory=True)  # a loop
    with pytest.raises(ConfigurationError, match=r"Symbolic link 'alias/up' makes a loop"):
        listing(root)
    (root / "real" / "up").unlink()
    assert listing(root) == [
        "alias/config.yaml",
        "link.yaml",
        "real/config.yaml",
        "script.sh",
    ]
    buffer = io.BytesIO()
    write_project_zip(root, [], buffer)
    with zipfile.ZipFile(buffer) as archive:
        assert archive.read("link.yaml") == b"a: 1"
        assert archive.read("alias/config.yaml") == b"a: 1"
        assert not stat.S_ISLNK(archive.getinfo("link.yaml").external_attr >> 16)


def test_symlinks_outside_are_refused_by_name(tmp_path: Path) -> None:
    secret = tree(tmp_path, {"secret/id_rsa": "key"})
    root = tree(tmp_path / "p", {"main.py": ""})
    (root / "conf").mkdir()
    (root / "conf" / "key").symlink_to(secret / "id_rsa")
    with pytest.raises(ConfigurationError) as info:
        listing(root)
    assert "Symbolic link 'conf/key' points outside the project" in str(info.value)
    assert "Exclude" in str(info.value)
    (root / "conf" / "key").unlink()
    (root / "home").symlink_to(secret, target_is_directory=True)
    with pytest.raises(ConfigurationError, match="'home' points outside"):
        listing(root)
    assert listing(root, ["home"]) == ["main.py"]  # excluded: never followed


def test_dangling_links_and_fifos_are_refused(tmp_path: Path) -> None:
    root = tree(tmp_path / "p", {"main.py": ""})
    (root / "gone").symlink_to(root / "nothing")
    with pytest.raises(ConfigurationError, match="'gone' points to a missing file"):
        listing(root)
    (root / "gone").unlink()
    os.mkfifo(root / "pipe")
    with pytest.raises(ConfigurationError, match="'pipe' is not a regular file"):
        listing(root)
    assert listing(root, ["pipe"]) == ["main.py"]


# -- zipping -------------------------------------------------------------------------------


class Unseekable(io.RawIOBase):
    """An upload stream: write-only, no seek or tell."""

    def __init__(self) -> None:
        self.data = bytearray()

    def writable(self) -> bool:
        return True

    def write(self, b: object) -> int:
        view = memoryview(cast("bytes", b))
        self.data += view
        return len(view)


def test_zip_round_trip_keeps_content_and_executable_bit(tmp_path: Path) -> None:
    root = tree(tmp_path / "p", {"train.py": "print(1)", "run.sh": "#!/bin/sh", "d/e.bin": b"\0"})
    (root / "run.sh").chmod(0o4775)  # setuid is not carried
    (root / "train.py").chmod(0o600)
    stream = Unseekable()
    summary = write_project_zip(root, [], cast("BinaryIO", stream))
    assert summary == ZipSummary(files=3, bytes_in=len("print(1)") + len("#!/bin/sh") + 1)
    with zipfile.ZipFile(io.BytesIO(bytes(stream.data))) as archive:
        assert archive.namelist() == ["d/e.bin", "run.sh", "train.py"]
        assert {info.compress_type for info in archive.infolist()} == {zipfile.ZIP_DEFLATED}
        assert archive.getinfo("run.sh").external_attr >> 16 == stat.S_IFREG | 0o755
        assert archive.getinfo("train.py").external_attr >> 16 == stat.S_IFREG | 0o644
    archive_path = tmp_path / "p.zip"
    archive_path.write_bytes(stream.data)
    assert safe_extract(archive_path, tmp_path / "out") == 3
    out = tmp_path / "out"
    assert (out / "train.py").read_text() == "print(1)"
    assert (out / "d" / "e.bin").read_bytes() == b"\0"
    assert stat.S_IMODE((out / "run.sh").stat().st_mode) == 0o755
    assert stat.S_IMODE((out / "train.py").stat().st_mode) == 0o644


def test_old_timestamps_are_clamped(tmp_path: Path) -> None:
    root = tree(tmp_path / "p", {"old.txt": "x"})
    os.utime(root / "old.txt", (0, 0))
    buffer = io.BytesIO()
    write_project_zip(root, [], buffer)
    with zipfile.ZipFile(buffer) as archive:
        assert archive.getinfo("old.txt").date_time == (1980, 1, 1, 0, 0, 0)


def test_excluded_files_are_never_opened(tmp_path: Path, opened_files: list[str]) -> None:
    root = tree(tmp_path / "p", {"main.py": "", "data/keep.txt": "k"})
    for big in (root / "model.sif", root / "data" / "raw" / "big.bin"):
        big.parent.mkdir(parents=True, exist_ok=True)
        with big.open("wb") as handle:
            handle.truncate(50 * MiB)
    buffer = io.BytesIO()
    opened_files.clear()
    summary = write_project_zip(root, ["*.sif", "data/raw/"], buffer)
    assert summary == ZipSummary(files=2, bytes_in=1)
    assert sorted(Path(p).name for p in opened_files) == ["keep.txt", "main.py"]


def test_big_file_is_zipped_in_little_memory(tmp_path: Path) -> None:
    root = tmp_path / "p"
    root.mkdir()
    with (root / "weights.bin").open("wb") as handle:
        handle.truncate(300 * MiB)  # sparse: costs no disk
    with (tmp_path / "p.zip").open("wb") as dest:
        tracemalloc.start()
        try:
            summary = write_project_zip(root, [], dest)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    assert summary == ZipSummary(files=1, bytes_in=300 * MiB)
    assert peak < 8 * MiB, f"zipping peaked at {peak / MiB:.1f} MiB"
    with zipfile.ZipFile(tmp_path / "p.zip") as archive:
        assert archive.getinfo("weights.bin").file_size == 300 * MiB


def test_tempfile_zip_and_cleanup_on_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    temp = tmp_path / "tmp"
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    root = tree(tmp_path / "p", {"main.py": "x"})
    path = zip_project_to_tempfile(root, [])
    try:
        assert path.parent == temp and path.suffix == ".zip"
        with zipfile.ZipFile(path) as archive:
            assert archive.namelist() == ["main.py"]
    finally:
        path.unlink()
    (root / "escape").symlink_to(tmp_path)
    with pytest.raises(ConfigurationError, match="'escape' points outside"):
        zip_project_to_tempfile(root, [])
    assert list(temp.iterdir()) == []


# -- extracting hostile archives -----------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("../../etc/x", "leaves the extraction directory"),
        ("a/../../x", "leaves the extraction directory"),
        ("/etc/x", "absolute path"),
        ("//server/share/x", "absolute path"),
        ("C:/Windows/x", "drive letter"),
        ("c:x", "drive letter"),
        ("..\\..\\x", "backslash"),
        ("a\\b", "backslash"),
        ("a\nb", "control characters"),
        ("./", "empty name"),
    ],
)
def test_bad_names_are_refused(tmp_path: Path, name: str, reason: str) -> None:
    message = refused(tmp_path, [Raw("ok.txt"), Raw(name)])
    assert f"member {name!r}" in message and reason in message


@pytest.mark.parametrize(
    ("mode", "reason"),
    [
        (stat.S_IFLNK | 0o777, "is a symbolic link"),
        (stat.S_IFCHR | 0o666, "is a device, FIFO or socket"),
        (stat.S_IFBLK | 0o666, "is a device, FIFO or socket"),
        (stat.S_IFIFO | 0o644, "is a device, FIFO or socket"),
    ],
)
def test_links_and_devices_are_refused(tmp_path: Path, mode: int, reason: str) -> None:
    message = refused(tmp_path, [Raw("ok.txt"), Raw("evil", (b"/etc/passwd",), mode=mode)])
    assert message == f"member 'evil' {reason}"


def test_duplicates_and_clashes_are_refused(tmp_path: Path) -> None:
    assert "'a.txt' appears twice" in refused(tmp_path, [Raw("a.txt"), Raw("a.txt")])
    assert "appears twice" in refused(tmp_path, [Raw("d/a.txt"), Raw("./d//a.txt")])
    message = refused(tmp_path, [Raw("a"), Raw("a/b")])
    assert "'a/b' lies under 'a', which is a file" in message


def test_limits_on_count_and_declared_size(tmp_path: Path) -> None:
    members = [Raw(f"f{i}") for i in range(11)]
    assert "11 members, more than the limit of 10" in refused(tmp_path, members, max_files=10)
    members = [Raw("a", (b"x" * 600,)), Raw("b", (b"x" * 600,))]
    message = refused(tmp_path, members, max_bytes=1000)
    assert "more than 1000 bytes (limit reached at member 'b')" in message


def test_central_directory_is_bounded_before_parsing(tmp_path: Path) -> None:
    """zipfile makes an object per directory entry: refuse a huge directory unparsed."""
    members = [Raw(f"f{i}") for i in range(30)]
    message = refused(tmp_path, members, max_files=2)
    assert message == "evil.zip has a 1460-byte central directory, too big for 2 members"
    archive = write_raw_zip(tmp_path / "z64.zip", members, zip64_end=True)
    assert safe_extract(archive, tmp_path / "out") == 30  # zip64 end records are read too
    with pytest.raises(UnsafeArchive, match="too big for 2 members"):
        safe_extract(archive, tmp_path / "out2", max_files=2)


def test_zip_bomb_is_refused_by_ratio_and_by_size(tmp_path: Path) -> None:
    bomb = zero_bomb()
    archive = write_raw_zip(tmp_path / "bomb.zip", [bomb])
    assert archive.stat().st_size < 2 * MiB
    with pytest.raises(UnsafeArchive, match=r"'bomb.bin' has a compression ratio of \d+:1"):
        safe_extract(archive, tmp_path / "out")
    with pytest.raises(UnsafeArchive, match="more than 104857600 bytes"):
        safe_extract(archive, tmp_path / "out", max_ratio=10_000, max_bytes=100 * MiB)
    assert not (tmp_path / "out").exists()  # refused before anything was written


def test_overlapping_members_are_refused(tmp_path: Path) -> None:
    members = [Raw("a", (b"x" * 100,)), Raw("b", data_of=0)]
    assert "member 'b' overlaps member 'a'" in refused(tmp_path, members)


def test_encrypted_members_are_refused(tmp_path: Path) -> None:
    assert "'a' is encrypted" in refused(tmp_path, [Raw("a", flags=0x801)])


def test_lying_sizes_are_caught_while_extracting(tmp_path: Path) -> None:
    data = b"x" * 10_000
    # Declares 100 bytes: zipfile stops there and the checksum of the whole data fails.
    message = refused(tmp_path, [Raw("ok.txt"), Raw("liar", (data,), size=100)])
    assert "member 'liar' is corrupt" in message
    message = refused(tmp_path, [Raw("bad-crc", (data,), crc=1)])
    assert "member 'bad-crc' is corrupt" in message


def test_bytes_written_are_counted_whatever_the_reader_says(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A decompressor that keeps producing data past the declared size is cut off."""

    def endless(self: zipfile.ZipExtFile, n: int = -1) -> bytes:
        return bytes(MiB)

    archive = write_raw_zip(tmp_path / "a.zip", [Raw("ok.txt"), Raw("liar", (b"x" * 10,))])
    monkeypatch.setattr(zipfile.ZipExtFile, "read", endless)
    with pytest.raises(UnsafeArchive, match=r"member 'ok\.txt' is larger than it declares"):
        safe_extract(archive, tmp_path / "out")
    assert list((tmp_path / "out").iterdir()) == []


def test_modes_are_normalised(tmp_path: Path) -> None:
    members = [
        Raw("setuid", mode=stat.S_IFREG | 0o6777),
        Raw("plain", mode=stat.S_IFREG | 0o666),
        Raw("nomode", mode=0),
        Raw("dir/", (), mode=stat.S_IFDIR | 0o777),
        Raw("dir/inner", mode=stat.S_IFREG | 0o700),
    ]
    out = tmp_path / "out"
    assert safe_extract(write_raw_zip(tmp_path / "m.zip", members), out) == 4
    modes = {p.relative_to(out).as_posix(): stat.S_IMODE(p.stat().st_mode) for p in out.rglob("*")}
    assert modes == {
        "setuid": 0o755,
        "plain": 0o644,
        "nomode": 0o644,
        "dir": 0o755,
        "dir/inner": 0o755,
    }


def test_not_a_zip_and_non_empty_destination(tmp_path: Path) -> None:
    junk = tmp_path / "junk.zip"
    junk.write_bytes(b"not a zip")
    with pytest.raises(UnsafeArchive, match=r"junk\.zip is not a readable zip archive"):
        safe_extract(junk, tmp_path / "out")
    archive = write_raw_zip(tmp_path / "ok.zip", [Raw("a")])
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("")
    with pytest.raises(ValueError, match="must be empty"):
        safe_extract(archive, tmp_path / "full")
