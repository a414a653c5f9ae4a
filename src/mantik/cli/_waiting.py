"""What the CLI shows during long phases: a run's state while it is awaited, and the
hashing and upload of what a submission sends.

On a terminal a live line (rich) says where the run is and for how long, with offline
tracking's sync lag, above one kept line per change; elsewhere (a log, CI) each change is
one plain, timestamped line, and nothing else.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from rich.console import Console

if TYPE_CHECKING:
    from rich.progress import Progress, TaskID
    from rich.status import Status

    from mantik.client._runs import RunInfo


def _since(submitted_at: str, now: datetime) -> str:
    try:
        start = datetime.fromisoformat(submitted_at)
    except ValueError:
        return ""
    if start.tzinfo is None:
        start = start.replace(tzinfo=UTC)
    seconds = max(0, int((now - start).total_seconds()))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


def describe(info: RunInfo, now: datetime | None = None) -> str:
    """One line: the run, its job state, where, for how long, how far its sync lags."""
    parts = [f"run {info.run_id} {info.state}"]
    if info.site:
        parts[0] += f" on {info.site}"
    since = _since(info.submitted_at, now or datetime.now(UTC))
    if since:
        parts.append(f"{since} since submission")
    if info.tracking == "offline":
        lag = info.sync_lag_seconds
        parts.append("offline, nothing synced yet" if lag is None and not info.synced_at
                     else "offline, all synced" if lag is None
                     else f"offline, sync lag {lag:.0f} s")  # fmt: skip
    if info.reason:
        parts.append(info.reason)
    return ", ".join(parts)


class StateWatch:
    """Called with each status a wait polls; shows what changed (see the module)."""

    def __init__(self, console: Console, *, live: bool) -> None:
        self._console = console
        self._live = live
        self._status: Status | None = None
        self._last: tuple[str, str | None, str | None] | None = None

    def __call__(self, info: RunInfo) -> None:
        line = describe(info)
        seen = (info.state, info.tracking, info.reason)
        if seen != self._last:
            self._last = seen
            stamp = datetime.now().strftime("%H:%M:%S")
            self._console.print(f"{stamp} {line}", soft_wrap=True, markup=False, highlight=False)
        if not self._live:
            return
        if info.done:
            self.close()
        elif self._status is None:
            self._status = self._console.status(line)
            self._status.start()
        else:
            self._status.update(line)

    def close(self) -> None:
        if self._status is not None:
            self._status.stop()
            self._status = None


@contextmanager
def watching(console: Console, *, show: bool) -> Iterator[StateWatch | None]:
    if not show:
        yield None
        return
    watch = StateWatch(console, live=console.is_terminal)
    try:
        yield watch
    finally:
        watch.close()


@dataclass
class Transfers:
    """``submit_run``'s ``progress`` and ``hash_progress``, drawn as bars as they start."""

    bars: Progress
    _tasks: dict[str, TaskID]

    def _update(self, label: str, done: int, total: int) -> None:
        if label not in self._tasks:
            self._tasks[label] = self.bars.add_task(label, total=total)
        self.bars.update(self._tasks[label], completed=done, total=total)

    def hashing(self, done: int, total: int) -> None:
        self._update("Hashing image", done, total)

    def upload(self, done: int, total: int) -> None:
        self._update("Uploading", done, total)


@contextmanager
def transfer_bars(console: Console, *, show: bool) -> Iterator[Transfers | None]:
    if not show:
        yield None
        return
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    columns = (BarColumn(), DownloadColumn(), TransferSpeedColumn(), TimeRemainingColumn())
    with Progress(TextColumn("{task.description}"), *columns, console=console) as bars:
        yield Transfers(bars, {})
