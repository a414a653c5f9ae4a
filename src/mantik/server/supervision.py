"""Workers end with their supervisor, however it ended.

uvicorn's supervisor stops its workers when it is asked to; killed (SIGKILL, the OOM
killer) it leaves them serving on the inherited socket, and a new platform cannot bind the
port. Each worker asks the kernel for SIGTERM when its parent dies (uvicorn's graceful
shutdown), or on other systems watches its parent's pid.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading
import time

# Set by the supervisor for its workers only (a single-worker platform has no supervisor).
SUPERVISOR_PID = "MANTIK_SUPERVISOR_PID"
_PR_SET_PDEATHSIG = 1


def supervise_workers() -> None:
    """In the supervisor, before it starts its workers."""
    os.environ[SUPERVISOR_PID] = str(os.getpid())


def _watch(supervisor: int) -> None:
    while os.getppid() == supervisor:
        time.sleep(1)
    os.kill(os.getpid(), signal.SIGTERM)


def end_with_supervisor() -> None:
    """In a worker: stop when the supervisor that started it is gone."""
    value = os.environ.pop(SUPERVISOR_PID, None)  # not handed on to jobs
    if value is None:
        return
    supervisor = int(value)
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) != 0:
            threading.Thread(target=_watch, args=(supervisor,), daemon=True).start()
    else:
        threading.Thread(target=_watch, args=(supervisor,), daemon=True).start()
    if os.getppid() != supervisor:  # it died before the kernel was asked to tell us
        raise SystemExit("mantik worker: the platform's supervisor is gone")
