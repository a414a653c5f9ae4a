"""A file whose mtime says when any worker last made a change that caches must not outlive.

Workers of one platform share the data dir; a cached answer taken before the last change is
not used (one ``stat`` per lookup, no message bus). Platforms on several hosts (PostgreSQL)
still see a change within the caches' own expiry.
"""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path


class ChangeStamp:
    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch(exist_ok=True)

    def read(self) -> int:
        try:
            return os.stat(self.path).st_mtime_ns
        except OSError:
            return -1  # never equal to a stored stamp: no cache hit

    def bump(self) -> None:
        moment = max(time.time_ns(), self.read() + 1)
        with contextlib.suppress(OSError):
            os.utime(self.path, ns=(moment, moment))
