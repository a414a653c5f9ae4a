"""Looking into an uploaded zip before unpacking it: its member names, and small files
such as the MLproject and the backend config, read into memory under a size limit."""

from __future__ import annotations

import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from mantik._bounded import shown
from mantik.compute.archive.unpack import UnsafeArchive, member_parts, open_archive, read_chunks


@dataclass
class Peek:
    """The members of an open archive by their normalised names (``a/b.txt``)."""

    archive: zipfile.ZipFile
    files: dict[str, zipfile.ZipInfo] = field(default_factory=dict)
    dirs: set[str] = field(default_factory=set)

    def read(self, name: str, limit: int) -> bytes:
        """The file ``name``, refused when it holds more than ``limit`` bytes."""
        info = self.files[name]
        if info.file_size > limit:
            raise UnsafeArchive(
                f"{shown(name)} is {info.file_size} bytes, more than the {limit} bytes a "
                "file of this kind may have"
            )
        data = bytearray()
        for chunk in read_chunks(self.archive, info, shown(name)):
            data += chunk
            if len(data) > limit:
                raise UnsafeArchive(f"{shown(name)} is larger than it declares")
        return bytes(data)


@contextmanager
def peek(zip_path: Path, max_files: int = 20_000) -> Iterator[Peek]:
    """List the archive at ``zip_path``; unsafe names are refused as unpacking would."""
    with zip_path.open("rb") as stream, open_archive(stream, zip_path.name, max_files) as archive:
        infos = archive.infolist()
        if len(infos) > max_files:
            raise UnsafeArchive(f"archive has {len(infos)} members, more than {max_files}")
        listing = Peek(archive)
        for info in infos:
            parts = member_parts(info.filename)
            listing.dirs.update("/".join(parts[:i]) for i in range(1, len(parts)))
            if info.is_dir():
                listing.dirs.add("/".join(parts))
            elif (name := "/".join(parts)) in listing.files:
                raise UnsafeArchive(f"member {shown(info.filename)} appears twice in the archive")
            else:
                listing.files[name] = info
        yield listing
