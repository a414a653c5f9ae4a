"""The cheap checks of a submission, made before anything is unpacked: the backend config
validates, and the archive holds an MLproject (or a script) with the entry point.

A wrong entry point or config in a 10 GB upload is refused without writing a byte of it.
"""

from __future__ import annotations

import posixpath
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import Any, Final

from mantik._bounded import shown
from mantik._exceptions import ConfigurationError
from mantik.compute.archive.peek import Peek, peek
from mantik.compute.archive.unpack import UnsafeArchive
from mantik.compute.config.loading import parse_backend_config, validate_backend_config
from mantik.compute.config.model import BackendConfig
from mantik.compute.project.loading import parse_mlproject
from mantik.server.compute.errors import InvalidSubmission

_MAX_SMALL_FILE: Final = 1024**2  # an MLproject or a backend config
_SCRIPTS: Final = (".py", ".sh")  # entry points without an MLproject, as MLflow runs them


def precheck(
    archive: Path,
    entry_point: str,
    backend_config: Mapping[str, Any] | None,
    backend_config_path: str | None,
) -> BackendConfig:
    """The submission's backend config, once it and the entry point are known to be good."""
    try:
        with peek(archive) as listing:
            config = _backend_config(listing, backend_config, backend_config_path)
            _check_entry_point(listing, entry_point)
    except UnsafeArchive as exc:
        raise InvalidSubmission(f"The uploaded project was refused: {exc}") from exc
    except ConfigurationError as exc:
        raise InvalidSubmission(str(exc)) from exc
    return config


def _backend_config(
    listing: Peek, inline: Mapping[str, Any] | None, path: str | None
) -> BackendConfig:
    if inline is not None:
        return validate_backend_config(dict(inline), source="the backend config")
    if not path:
        raise InvalidSubmission("No backend configuration was sent.")
    named = f"backend config {shown(path)}"
    if "\0" in path:
        raise InvalidSubmission(f"The {named} has a NUL character in its name.")
    normal = posixpath.normpath(path)
    if PurePosixPath(normal).is_absolute() or normal == ".." or normal.startswith("../"):
        raise InvalidSubmission(f"The {named} lies outside the MLproject directory.")
    if normal in listing.dirs:
        raise InvalidSubmission(f"The {named} is a directory, not a file.")
    if normal not in listing.files:
        raise InvalidSubmission(f"The {named} does not exist in the uploaded project.")
    try:
        text = listing.read(normal, _MAX_SMALL_FILE).decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InvalidSubmission(f"The {named} is not UTF-8 text: {exc.reason}.") from None
    source = f"backend config {shown(path)}"
    return parse_backend_config(text, source=source, suffix=PurePosixPath(normal).suffix)


def _check_entry_point(listing: Peek, name: str) -> None:
    found = sorted(f for f in listing.files if f.lower() == "mlproject")
    if len(found) > 1:
        raise InvalidSubmission(f"The project has both {' and '.join(found)}; keep only one.")
    declared: list[str] = []
    if found:
        try:
            text = listing.read(found[0], _MAX_SMALL_FILE).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidSubmission(f"{found[0]} is not UTF-8 text: {exc.reason}.") from None
        entry_points = parse_mlproject(text, found[0]).get("entry_points")
        if not isinstance(entry_points, dict):
            return  # a malformed MLproject: loading it says exactly what is wrong
        if name in entry_points:
            return
        declared = [str(key) for key in entry_points]
    if name.endswith(_SCRIPTS) and posixpath.normpath(name) in listing.files:
        return
    available = ", ".join(shown(n, 60) for n in declared[:20]) or "none"
    raise InvalidSubmission(
        f"Unknown entry point {shown(name)}. Entry points in the MLproject: {available}; "
        "or give the path of a .py or .sh file in the project."
    )
