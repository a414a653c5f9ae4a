"""What the platform accepts from a UNICORE directory listing when it mirrors a job's
offline files: the listing comes from the site, and the job decides the names in it."""

from __future__ import annotations

from datetime import UTC, datetime

from mantik.server.compute.offline.unicore_mirror import RemoteFile, children, parse_time


def _entry(size: int = 1, directory: bool = False) -> dict[str, object]:
    return {"isDirectory": directory, "size": size, "lastAccessed": "2026-11-27T10:00:00+0100"}


def test_only_plain_names_directly_inside_the_folder_are_taken() -> None:
    listing = {
        "content": {
            "/.mantik/offline/snapshot.db": _entry(4096),
            "/.mantik/offline/artifacts": _entry(0, directory=True),
            "/.mantik/offline/../../etc/passwd": _entry(),  # leaves the folder
            "/.mantik/offline/..": _entry(),
            "/.mantik/offline/a/b": _entry(),  # not directly inside
            "/.mantik/other/file": _entry(),  # another folder
            "/.mantik/offline/nul\0name": _entry(),
            "/.mantik/offline/broken": "not properties",
        }
    }
    found = children(listing, ".mantik/offline")
    assert found == {
        "snapshot.db": RemoteFile(
            "snapshot.db", False, 4096, datetime(2026, 11, 27, 9, tzinfo=UTC).timestamp()
        ),
        "artifacts": RemoteFile(
            "artifacts", True, 0, datetime(2026, 11, 27, 9, tzinfo=UTC).timestamp()
        ),
    }


def test_keys_without_a_leading_slash_and_an_empty_listing() -> None:
    listing = {"content": {".mantik/tracking": _entry(8)}}
    assert set(children(listing, "/.mantik/")) == {"tracking"}
    assert children({}, ".mantik") == {}


def test_unicore_dates() -> None:
    assert (
        parse_time("2026-11-27T10:00:00+0000") == datetime(2026, 11, 27, 10, tzinfo=UTC).timestamp()
    )
    assert parse_time("yesterday") is None
    assert parse_time(None) is None
