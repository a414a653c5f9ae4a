"""Apptainer images on the client: the local ``.sif`` to send, its sha256, or one built from
the MLproject's ``docker_env`` image.

Digests are remembered in ``~/.mantik/image-digests.json`` by (real path, size, mtime,
inode), so submitting the same 5 GB image again does not read it again. Images converted
from Docker are kept in ``~/.mantik/images/<docker image id>.sif`` and reused.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path

from mantik._exceptions import ConfigurationError
from mantik.compute.config.model import BackendConfig
from mantik.compute.project.model import MLProject

CHUNK = 1024 * 1024
_REMEMBERED = 512  # digests kept in image-digests.json
_IMAGE_ID = re.compile(r"(?:sha256:)?([0-9a-f]{64})")
_APPTAINER_DOCS = "https://apptainer.org/docs/admin/main/installation.html"
_INSTEAD = (
    "or set SingularityImage to a local .sif file, or RemoteImage to an image already on "
    "the site, in the backend config"
)


def mantik_home() -> Path:
    return Path.home() / ".mantik"


def image_to_send(config: BackendConfig, project: MLProject) -> Path | None:
    """The local image file the run needs: SingularityImage, else one built from docker_env."""
    if config.singularity_image:
        path = Path(config.singularity_image).expanduser()
        path = path if path.is_absolute() else project.path / path
        if not path.is_file():
            raise ConfigurationError(
                f"SingularityImage {config.singularity_image!r} is not a file (looked at "
                f"{path}). Give the path of a local image, relative to the MLproject directory "
                "or absolute; for an image already on the site set RemoteImage instead."
            )
        return path
    if config.remote_image or config.venv or not project.docker_image:
        return None
    return build_from_docker(project.docker_image)


def project_excludes(image: Path, project_dir: Path) -> list[str]:
    """Exclude globs that keep ``image`` out of the project zip (it travels on its own)."""
    excludes = []
    for candidate in {image.absolute(), image.resolve()}:
        if candidate.is_relative_to(project_dir):
            relative = candidate.relative_to(project_dir).as_posix()
            excludes.append("/" + glob.escape(relative))
    return excludes


# --- digests ----------------------------------------------------------------------------


def _identity(path: Path) -> str:
    info = path.stat()
    return f"{path}|{info.st_size}|{info.st_mtime_ns}|{info.st_ino}"


def _load_digests(store: Path) -> dict[str, str]:
    try:
        data = json.loads(store.read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {k: v for k, v in data.items() if isinstance(k, str) and isinstance(v, str)}


def _save_digests(store: Path, digests: dict[str, str]) -> None:
    kept = dict(list(digests.items())[-_REMEMBERED:])
    store.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=store.parent, prefix=".image-digests-")
    try:
        with os.fdopen(fd, "w") as handle:
            json.dump(kept, handle, indent=0)
        os.replace(name, store)  # concurrent clients: the last complete file wins
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(name)


def sha256_of(path: Path, reading: Callable[[int], None] | None = None) -> str:
    """The file's sha256, remembered until the file changes; ``reading(n)`` reports bytes."""
    real = path.resolve()
    store = mantik_home() / "image-digests.json"
    key = _identity(real)
    known = _load_digests(store).get(key)
    if known is not None:
        return known
    digest = hashlib.sha256()
    with real.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
            if reading is not None:
                reading(len(chunk))
    value = digest.hexdigest()
    if _identity(real) == key:  # not changed while it was read
        digests = _load_digests(store)
        digests.pop(key, None)
        digests[key] = value
        _save_digests(store, digests)
    return value


def forget_digest(path: Path) -> None:
    """Drop a remembered digest the platform found wrong (the file changed unnoticed)."""
    store = mantik_home() / "image-digests.json"
    digests = _load_digests(store)
    real = str(path.resolve())
    kept = {k: v for k, v in digests.items() if k.rsplit("|", 3)[0] != real}
    if kept != digests:
        _save_digests(store, kept)


# --- Docker → Apptainer -----------------------------------------------------------------


def _tool(name: str, image: str, install: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise ConfigurationError(
            f"The MLproject's docker_env image {image!r} must be converted to an Apptainer "
            f"image, which needs `{name}`, and it is not installed here. Install {install}, "
            f"{_INSTEAD}."
        )
    return found


def _tail(text: str, lines: int = 5) -> str:
    return " | ".join(text.strip().splitlines()[-lines:]) or "no output"


def _daemon_reference(image: str) -> str:
    """``docker-daemon://`` needs a tag: Docker's own default is ``latest``."""
    name = image.rsplit("/", 1)[-1]
    return image if ":" in name or "@" in name else f"{image}:latest"


def build_from_docker(image: str) -> Path:
    """``apptainer build`` the local Docker image into the cache; reuse a build of its id."""
    docker = _tool("docker", image, "Docker (https://docs.docker.com/engine/install/)")
    apptainer = _tool("apptainer", image, f"Apptainer ({_APPTAINER_DOCS})")
    found = subprocess.run(
        [docker, "image", "inspect", "--format", "{{.Id}}", image],
        capture_output=True,
        text=True,
        timeout=120,
    )
    match = _IMAGE_ID.fullmatch(found.stdout.strip())
    if found.returncode != 0 or match is None:
        raise ConfigurationError(
            f"Docker has no image {image!r} here ({_tail(found.stderr or found.stdout)}). "
            f"Pull or build it first (`docker pull {image}`), {_INSTEAD}."
        )
    cache = mantik_home() / "images"
    target = cache / f"{match.group(1)}.sif"
    if target.is_file():
        return target
    cache.mkdir(parents=True, exist_ok=True)
    # Built under a temporary name: an interrupted build never looks like a finished one.
    partial = cache / f".{match.group(1)}.{os.getpid()}.sif"
    try:
        built = subprocess.run(
            [apptainer, "build", str(partial), f"docker-daemon://{_daemon_reference(image)}"],
            capture_output=True,
            text=True,
        )
        if built.returncode != 0 or not partial.is_file():
            raise ConfigurationError(
                f"`apptainer build` could not convert the Docker image {image!r}: "
                f"{_tail(built.stderr or built.stdout)}. Fix that, {_INSTEAD}."
            )
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)
    return target
