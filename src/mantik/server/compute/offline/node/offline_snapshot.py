"""Copy the job's live MLflow store consistently; publish the copy atomically.

Usage: python3 snapshot.py LIVE_DB SNAPSHOT_DB [--every SECONDS] (stdlib only; on the node,
next to the job). The platform reads only the snapshot, never the live database.

With ``--every``, a snapshot every SECONDS until terminated — but never more than a tenth of
the time copying: the copy holds the job's writes back, and a large store takes a while.

Next to the snapshot goes ``SNAPSHOT_DB.blocks``: a JSON header line, then a 16-byte
BLAKE2b digest of each 16 KiB block. A platform that fetches snapshots over a network
(UNICORE) compares it with the digests of the copy it holds and fetches only the blocks
that changed: SQLite's backup keeps page numbers, so a snapshot differs from the one before
in the pages the job wrote — new points, a few index pages — not in its size.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import sys
import time

BLOCK = 16 * 1024
DIGEST_SIZE = 16
DUTY = 0.1  # the largest share of the time spent copying, with --every


def block_digests(path: str) -> bytes:
    digests = bytearray()
    with open(path, "rb") as handle:
        while block := handle.read(BLOCK):
            digests += hashlib.blake2b(block, digest_size=DIGEST_SIZE).digest()
    return bytes(digests)


def _publish(temporary: str, target: str) -> None:
    descriptor = os.open(temporary, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
    os.replace(temporary, target)


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
    digests = block_digests(temporary)
    header = {"size": os.path.getsize(temporary), "block": BLOCK, "digest": "blake2b-16"}
    manifest = f"{target}.blocks"
    with open(f"{manifest}.tmp", "wb") as handle:
        handle.write(json.dumps(header).encode() + b"\n" + digests)
    # The digests first: a reader that meets them with the snapshot before sees blocks that
    # do not match, and fetches the whole snapshot; digests never lag behind the snapshot.
    _publish(f"{manifest}.tmp", manifest)
    _publish(temporary, target)
    directory = os.open(os.path.dirname(os.path.abspath(target)), os.O_RDONLY)
    try:
        os.fsync(directory)  # the renames themselves survive a node crash
    finally:
        os.close(directory)


def every(live: str, target: str, seconds: float) -> None:
    while True:
        started = time.monotonic()
        try:
            snapshot(live, target)
        except (OSError, sqlite3.Error) as exc:  # e.g. locked for a minute: try again later
            print(f"snapshot failed: {exc}", file=sys.stderr, flush=True)
        took = time.monotonic() - started
        time.sleep(max(seconds, took / DUTY - took))


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[3] == "--every":
        every(sys.argv[1], sys.argv[2], float(sys.argv[4]))
    else:
        snapshot(sys.argv[1], sys.argv[2])
