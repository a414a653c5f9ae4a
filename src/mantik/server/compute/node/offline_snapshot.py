"""Copy the job's live MLflow store consistently; publish the copy atomically.

Usage: python3 snapshot.py LIVE_DB SNAPSHOT_DB (stdlib only; on the node, next to the job).
The platform reads only the snapshot, never the live database.
"""

from __future__ import annotations

import os
import sqlite3
import sys


def snapshot(live: str, target: str) -> None:
    if not os.path.exists(live):
        return
    temporary = f"{target}.tmp"
    # Read-write on purpose: after a killed writer, opening rolls its hot journal back.
    source = sqlite3.connect(live, timeout=60)
    copy = sqlite3.connect(temporary)
    try:
        source.backup(copy)  # one step: a consistent copy under a shared lock
    finally:
        copy.close()
        source.close()
    descriptor = os.open(temporary, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
    os.replace(temporary, target)
    directory = os.open(os.path.dirname(os.path.abspath(target)), os.O_RDONLY)
    try:
        os.fsync(directory)  # the rename itself survives a node crash
    finally:
        os.close(directory)


if __name__ == "__main__":
    snapshot(sys.argv[1], sys.argv[2])
