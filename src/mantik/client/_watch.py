"""After submission: waiting for a run, and reading or following its log.

The platform serves a log by byte offset of the job's whole output (its answer's
``X-Mantik-Log-End`` is where to go on), so following reads only what is new, however long
the log grew and however much of it the platform left out.
"""

from __future__ import annotations

import codecs
import time
from collections.abc import Callable, Iterator

import httpx

from mantik._exceptions import RunTimeout
from mantik.client._runs import RunInfo

Call = Callable[..., httpx.Response]
_END = "X-Mantik-Log-End"


def read_log(call: Call, run_id: str, params: dict[str, int]) -> tuple[bytes, int]:
    """The bytes a log request answers with, and the offset to ask for next."""
    response = call("GET", f"/runs/{run_id}/logs", params=params)
    data = response.content
    end = response.headers.get(_END, "")
    if end.isdigit():
        return data, int(end)
    offset = params.get("offset", 0)  # a platform without ranges sends the whole log
    return data[offset:], len(data)


def follow(
    call: Call, status: Callable[[], RunInfo], run_id: str, interval: float
) -> Iterator[str]:
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    offset = 0
    while True:
        info = status()  # first: once it says done, the read after it holds the whole log
        data, offset = read_log(call, run_id, {"offset": offset})
        text = decoder.decode(data, final=info.done)
        if text:
            yield text
        if info.done:
            return
        time.sleep(interval)


def wait(
    status: Callable[[], RunInfo],
    run_id: str,
    timeout: float | None,
    interval: float,
    on_status: Callable[[RunInfo], object] | None = None,
) -> RunInfo:
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        info = status()
        if on_status is not None:
            on_status(info)
        if info.done:
            return info
        if deadline is not None and time.monotonic() > deadline:
            raise RunTimeout(
                f"Run {run_id} did not finish within {timeout} s (state {info.state})."
            )
        time.sleep(interval)
