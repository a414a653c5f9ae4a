"""Upload progress: what ``submit_run(progress=...)`` accepts, and the file wrapper that
counts the bytes as httpx reads them."""

from __future__ import annotations

from collections.abc import Callable
from typing import IO, Protocol

Report = Callable[[int], None]


class UploadProgress(Protocol):
    """Called after each chunk uploaded with the bytes sent so far and the total (the image,
    when it is uploaded, then the project), e.g. to advance a progress bar."""

    def __call__(self, sent_bytes: int, total_bytes: int, /) -> object: ...


class ProgressReader:
    """A file wrapper that reports the bytes read to ``report``."""

    def __init__(self, handle: IO[bytes], report: Report) -> None:
        self._handle = handle
        self._report = report

    def read(self, size: int = -1) -> bytes:
        chunk = self._handle.read(size)
        self._report(len(chunk))
        return chunk


def reporter(progress: UploadProgress | None, total: int) -> Report:
    """One running count over everything uploaded, reported to ``progress``."""
    sent = 0

    def report(n: int) -> None:
        nonlocal sent
        sent += n
        if progress is not None:
            progress(sent, total)

    return report
