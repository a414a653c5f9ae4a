"""Images on the client: Docker → Apptainer conversion, remembered digests, zip exclusion.

Neither Apptainer nor a Docker engine can run here: ``apptainer`` and ``docker`` are
stand-in scripts on a temporary PATH that check the command lines mantik runs and create
the output file (tests/support/apptainer.py).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

import mantik
from mantik.client import _images
from mantik.compute.archive.pack import iter_project_files
from mantik.compute.config.loading import validate_backend_config
from mantik.compute.project.loading import load_project
from tests.support import apptainer

IMAGE_ID = "ab" * 32


@pytest.fixture
def bin_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty folder that is all of PATH besides the system's basic tools."""
    folder = tmp_path / "bin"
    folder.mkdir()
    monkeypatch.setenv("PATH", f"{folder}:/usr/bin:/bin")
    return folder


def docker_project(root: Path, image: str = "ghcr.io/acme/train") -> Path:
    root.mkdir()
    (root / "MLproject").write_text(
        f"name: t\ndocker_env:\n  image: {image}\nentry_points:\n  main:\n    command: 'true'\n"
    )
    return root


def test_docker_image_is_converted_once_per_image_id(bin_dir: Path, tmp_path: Path) -> None:
    calls = tmp_path / "calls.txt"
    apptainer.docker(bin_dir, calls, "ghcr.io/acme/train", IMAGE_ID)
    apptainer.builder(bin_dir, calls)
    project = load_project(docker_project(tmp_path / "p"))
    config = validate_backend_config({"ComputeSite": "slurm"})

    built = _images.image_to_send(config, project)

    cache = Path.home() / ".mantik" / "images"
    assert built == cache / f"{IMAGE_ID}.sif"
    assert built.read_text() == "SIF built from docker-daemon://ghcr.io/acme/train:latest\n"
    inspect, build = calls.read_text().splitlines()
    assert inspect == "image inspect --format {{.Id}} ghcr.io/acme/train"
    assert build == (
        f"build {cache}/.{IMAGE_ID}.{os.getpid()}.sif docker-daemon://ghcr.io/acme/train:latest"
    )
    assert sorted(p.name for p in cache.iterdir()) == [f"{IMAGE_ID}.sif"]

    assert _images.image_to_send(config, project) == built
    assert "build" not in calls.read_text().splitlines()[-1]  # reused: only inspected again
    # An image to send or to find on the site, or a venv: nothing is built.
    for other in ({"SingularityImage": "x.sif"}, {"RemoteImage": "/p/x.sif"}, {"Venv": "/v"}):
        calls.unlink(missing_ok=True)
        if "SingularityImage" in other:
            (project.path / "x.sif").write_bytes(b"sif")
        found = _images.image_to_send(validate_backend_config(other), project)
        assert found == (project.path / "x.sif" if "SingularityImage" in other else None)
        assert not calls.exists()


def test_tagged_image_keeps_its_tag(bin_dir: Path, tmp_path: Path) -> None:
    calls = tmp_path / "calls.txt"
    apptainer.docker(bin_dir, calls, "localhost:5000/train:v2", IMAGE_ID)
    apptainer.builder(bin_dir, calls)
    assert _images.build_from_docker("localhost:5000/train:v2").is_file()
    assert calls.read_text().splitlines()[1].endswith(" docker-daemon://localhost:5000/train:v2")


@pytest.mark.parametrize(
    ("tools", "message"),
    [
        ((), r"needs `docker`, and it is not installed here\. Install Docker"),
        (("docker",), r"needs `apptainer`, and it is not installed here\. Install Apptainer"),
    ],
    ids=["no-docker", "no-apptainer"],
)
def test_missing_tool_says_what_to_install_or_which_key_to_set(
    bin_dir: Path, tmp_path: Path, tools: tuple[str, ...], message: str
) -> None:
    if "docker" in tools:
        apptainer.docker(bin_dir, tmp_path / "calls.txt", "ghcr.io/acme/train", IMAGE_ID)
    project = load_project(docker_project(tmp_path / "p"))
    with pytest.raises(mantik.ConfigurationError, match=message) as info:
        _images.image_to_send(validate_backend_config({}), project)
    assert "set SingularityImage to a local .sif file, or RemoteImage" in str(info.value)


def test_image_docker_does_not_have_is_named(bin_dir: Path, tmp_path: Path) -> None:
    apptainer.docker(bin_dir, tmp_path / "calls.txt", "other", IMAGE_ID)
    apptainer.builder(bin_dir, tmp_path / "calls.txt")
    with pytest.raises(mantik.ConfigurationError, match="Docker has no image 'train:v1'") as info:
        _images.build_from_docker("train:v1")
    assert "docker pull train:v1" in str(info.value)


def test_failed_build_leaves_nothing_in_the_cache(bin_dir: Path, tmp_path: Path) -> None:
    apptainer.docker(bin_dir, tmp_path / "calls.txt", "train:v1", IMAGE_ID)
    failing = bin_dir / "apptainer"
    failing.write_text('#!/bin/bash\necho half > "$2"\necho "FATAL: no space left" >&2\nexit 255\n')
    failing.chmod(0o755)
    with pytest.raises(mantik.ConfigurationError, match="FATAL: no space left"):
        _images.build_from_docker("train:v1")
    assert list((Path.home() / ".mantik" / "images").iterdir()) == []


def test_digest_is_remembered_until_the_file_changes(tmp_path: Path) -> None:
    image = tmp_path / "image.sif"
    image.write_bytes(b"A" * 3_000_000)
    first = _images.sha256_of(image)
    assert first == hashlib.sha256(b"A" * 3_000_000).hexdigest()

    # Same size, inode and mtime: the remembered digest, without reading the file.
    stamp = image.stat().st_mtime_ns
    with image.open("r+b") as handle:
        handle.write(b"B")
    os.utime(image, ns=(stamp, stamp))
    assert _images.sha256_of(image) == first
    # A new mtime: read again.
    os.utime(image, ns=(stamp + 1_000_000, stamp + 1_000_000))
    assert _images.sha256_of(image) == hashlib.sha256(b"B" + b"A" * 2_999_999).hexdigest()
    _images.forget_digest(image)
    assert (Path.home() / ".mantik" / "image-digests.json").read_text().strip() == "{}"


def test_image_inside_the_project_stays_out_of_the_zip(tmp_path: Path) -> None:
    project = tmp_path / "project"
    (project / "img").mkdir(parents=True)
    for name in ("img/my[1]*.sif", "img/my1x.sif", "train.py"):
        (project / name).write_text("x")
    os.symlink(project / "img" / "my[1]*.sif", project / "link.sif")
    excludes = _images.project_excludes(project / "link.sif", project)
    assert sorted(excludes) == ["/img/my[[]1][*].sif", "/link.sif"]  # the link and its target
    kept = [p.as_posix() for p in iter_project_files(project, excludes)]
    assert kept == ["img/my1x.sif", "train.py"]
    assert _images.project_excludes(tmp_path / "elsewhere.sif", project) == []
