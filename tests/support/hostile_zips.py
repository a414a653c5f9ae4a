"""Hostile zip archives built byte by byte (zipfile refuses to write most of them)."""

from __future__ import annotations

import bz2
import io
import lzma
import struct
import zipfile
import zlib
from dataclasses import dataclass, field

MiB = 1024**2
GiB = 1024**3

UTF8_FLAG = 0x800


@dataclass
class Member:
    name: bytes
    data: bytes = b""  # the stored bytes, already compressed with ``method``
    size: int | None = None  # declared uncompressed size (default: len(data))
    crc: int | None = None  # declared CRC-32 (default: that of ``data``)
    method: int = zipfile.ZIP_STORED
    flags: int = 0
    mode: int = 0o100644  # the Unix mode in the external attributes
    local_name: bytes | None = None  # the name in the local header, if it differs
    local_flags: int | None = None


@dataclass
class RawZip:
    """Members written as they are declared, however wrong that is."""

    members: list[Member] = field(default_factory=list)

    def add(self, name: bytes | str, data: bytes = b"", **kwargs: int | bytes | None) -> RawZip:
        raw = name.encode() if isinstance(name, str) else name
        self.members.append(Member(raw, data, **kwargs))  # type: ignore[arg-type]
        return self

    def packed(self, name: str, plain: bytes, method: int, *, cut: int = 0) -> RawZip:
        """Add ``plain`` compressed with ``method``; ``cut`` bytes of the middle of the
        compressed data overwritten with garbage (a corrupt member)."""
        packers = {zipfile.ZIP_DEFLATED: deflated, zipfile.ZIP_BZIP2: bzip2ed}
        data = packers.get(method, lzmaed)(plain)
        if cut:
            middle = len(data) // 2
            data = data[:middle] + b"\xa5" * cut + data[middle + cut :]
        return self.add(name, data, method=method, size=len(plain), crc=zlib.crc32(plain))

    def build(self) -> bytes:
        out = io.BytesIO()
        central = io.BytesIO()
        for member in self.members:
            offset = out.tell()
            size = len(member.data) if member.size is None else member.size
            crc = zlib.crc32(member.data) if member.crc is None else member.crc
            local_name = member.name if member.local_name is None else member.local_name
            local_flags = member.flags if member.local_flags is None else member.local_flags
            out.write(
                struct.pack(
                    "<4s5H3L2H",
                    b"PK\x03\x04",
                    20,
                    local_flags,
                    member.method,
                    0,
                    0x21,
                    crc,
                    len(member.data),
                    size,
                    len(local_name),
                    0,
                )
            )
            out.write(local_name)
            out.write(member.data)
            central.write(
                struct.pack(
                    "<4s6H3L5H2L",
                    b"PK\x01\x02",
                    0x0314,  # made on Unix: the external attributes carry the mode
                    20,
                    member.flags,
                    member.method,
                    0,
                    0x21,
                    crc,
                    len(member.data),
                    size,
                    len(member.name),
                    0,
                    0,
                    0,
                    0,
                    member.mode << 16,
                    offset,
                )
            )
            central.write(member.name)
        start = out.tell()
        directory = central.getvalue()
        out.write(directory)
        count = len(self.members)
        out.write(
            struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, count, count, len(directory), start, 0)
        )
        return out.getvalue()


def project_zip(files: dict[str, bytes | str]) -> bytes:
    """An ordinary zip (what the client sends) of ``files``."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return buffer.getvalue()


MLPROJECT = "name: hostile\nentry_points:\n  main:\n    command: 'true'\n"


def deflated(data: bytes) -> bytes:
    packer = zlib.compressobj(9, zlib.DEFLATED, -15)
    return packer.compress(data) + packer.flush()


def bzip2ed(data: bytes) -> bytes:
    return bz2.compress(data)


def lzmaed(data: bytes) -> bytes:
    """A zip LZMA member: version, properties size and properties, then raw LZMA1 data."""
    filters = [{"id": lzma.FILTER_LZMA1, "dict_size": 1 << 16}]
    properties = lzma._encode_filter_properties(filters[0])  # type: ignore[attr-defined]
    packer = lzma.LZMACompressor(lzma.FORMAT_RAW, filters=filters)
    body = packer.compress(data) + packer.flush()
    return struct.pack("<BBH", 9, 4, len(properties)) + properties + body


def zeros_deflated(size: int, piece: int = 64 * MiB) -> bytes:
    """Raw deflate data of ``size`` zero bytes (a multiple of ``piece``), without
    compressing all of them: a fully flushed piece repeats as it is."""
    packer = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = packer.compress(bytes(piece)) + packer.flush(zlib.Z_FULL_FLUSH)
    return block * (size // piece) + b"\x03\x00"  # an empty final block


def zeros_crc(size: int, piece: int = 64 * MiB) -> int:
    crc, chunk = 0, bytes(piece)
    for _ in range(size // piece):
        crc = zlib.crc32(chunk, crc)
    return crc


def deflate_bomb(total: int = 10 * GiB, members: int = 5, *, declared: int | None = None) -> bytes:
    """``members`` files of zeros, ``total`` bytes in all, at deflate's ceiling (≈1030:1);
    with ``declared``, each member claims that size instead of its own."""
    each = total // members
    data = zeros_deflated(each)
    crc = zeros_crc(each)
    archive = RawZip().add("MLproject", MLPROJECT.encode())
    for i in range(members):
        size = each if declared is None else declared
        archive.add(f"data/zeros-{i}.bin", data, method=zipfile.ZIP_DEFLATED, size=size, crc=crc)
    return archive.build()
