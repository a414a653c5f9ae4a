"""Block digests of a job's snapshot (``snapshot.db.blocks``, written by the node's
``offline_snapshot.py``): a JSON header line, then a 16-byte BLAKE2b digest per block.
Comparing two lists tells which byte ranges of a snapshot changed."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

BLOCK_SIZE = 16 * 1024  # as the node writes them
# Changed blocks closer than this are fetched in one range request (fewer round trips;
# a store changes in a few dozen places per snapshot: its indexes grow in many spots).
MERGE_GAP_BYTES = 64 * 1024
MAX_RANGE_BYTES = 8 * 1024 * 1024  # bounded memory per request
MAX_MANIFEST_BYTES = 64 * 1024 * 1024  # digests of a 64 GiB snapshot


class BlockDigestsError(Exception):
    """The digests do not describe a snapshot."""


def block_digest(data: bytes) -> bytes:
    return hashlib.blake2b(data, digest_size=16).digest()


@dataclass(frozen=True)
class Manifest:
    size: int
    block: int
    digests: bytes  # a 16-byte BLAKE2b digest per block

    @classmethod
    def parse(cls, data: bytes) -> Manifest:
        header, _, digests = data.partition(b"\n")
        try:
            meta = json.loads(header)
            size, block = int(meta["size"]), int(meta["block"])
        except (ValueError, KeyError, TypeError) as exc:
            raise BlockDigestsError(f"unreadable block digests: {exc}") from exc
        count = -(-size // block) if 4096 <= block <= MAX_RANGE_BYTES else -1
        if meta.get("digest") != "blake2b-16" or count < 0 or len(digests) != 16 * count:
            raise BlockDigestsError("block digests do not describe the snapshot")
        return cls(size, block, digests)

    @classmethod
    def read(cls, path: Path) -> Manifest | None:
        try:
            return cls.parse(path.read_bytes())
        except (OSError, BlockDigestsError):
            return None

    @classmethod
    def of_file(cls, path: Path, block: int = BLOCK_SIZE) -> Manifest:
        digests = bytearray()
        with path.open("rb") as handle:
            while data := handle.read(block):
                digests += block_digest(data)
        return cls(path.stat().st_size, block, bytes(digests))

    def serialize(self) -> bytes:
        header = {"size": self.size, "block": self.block, "digest": "blake2b-16"}
        return json.dumps(header).encode() + b"\n" + self.digests

    def digest(self, index: int) -> bytes:
        return self.digests[16 * index : 16 * index + 16]

    @property
    def blocks(self) -> int:
        return len(self.digests) // 16

    def changed_ranges(self, old: Manifest | None) -> list[tuple[int, int]]:
        """Byte ranges [start, end) to fetch to turn ``old``'s file into this one."""
        merge = max(1, MERGE_GAP_BYTES // self.block)
        changed = [
            i
            for i in range(self.blocks)
            if old is None or old.block != self.block or old.digest(i) != self.digest(i)
        ]
        ranges: list[list[int]] = []
        for index in changed:
            if ranges and index - ranges[-1][1] <= merge:
                ranges[-1][1] = index + 1
            else:
                ranges.append([index, index + 1])
        span = max(1, MAX_RANGE_BYTES // self.block)
        return [
            (i * self.block, min(min(i + span, b) * self.block, self.size))
            for a, b in ranges
            for i in range(a, b, span)
        ]
