"""A submission as the API hands it over, and the first step with it: unpack the project,
validate its backend config and render the entry point's command."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mantik._bounded import shown
from mantik._exceptions import ConfigurationError
from mantik._mlflow_internals import param_refusal
from mantik.compute.archive.unpack import UnsafeArchive, safe_extract
from mantik.compute.config.model import BackendConfig
from mantik.compute.project.loading import load_project
from mantik.server.compute.errors import InvalidSubmission
from mantik.server.compute.job_folder import PROJECT
from mantik.server.compute.jobs import SiteCredentials
from mantik.server.compute.precheck import precheck

# Deflate cannot exceed ≈ 1032:1, and the unpacked size is capped while writing: a
# zero-filled data file (1000:1) is legitimate, a bomb still hits the cap.
_MAX_RATIO = 1100


@dataclass(frozen=True)
class Submission:
    experiment_id: str
    entry_point: str
    parameters: Mapping[str, Any]
    archive: Path
    backend_config_path: str | None = None
    backend_config: Mapping[str, Any] | None = None
    run_name: str | None = None
    project: str | None = None  # accounting project (MANTIK_UNICORE_PROJECT)
    credentials: SiteCredentials | None = None  # used for this request only
    image_digest: str | None = None  # sha256 of an image in the site's image cache
    archive_sha256: str = ""  # of the uploaded project (what makes a retry the same one)
    allow_undeclared_params: bool = False  # pass them on as --name value, as MLflow does


@dataclass(frozen=True)
class Submitted:
    experiment_id: str
    run_id: str
    job_id: str
    site: str


@dataclass(frozen=True)
class Prepared:
    """An unpacked, validated submission."""

    config: BackendConfig
    command: str  # the entry point's shell command line, already quoted
    entry_point: str
    project_dir: Path


_MAX_PARAM_VALUE = 6000  # MLflow's MAX_PARAM_VAL_LENGTH
_MAX_PARAMETERS = 1000  # MLflow logs at most this many params in one batch


def check_parameters(parameters: Mapping[str, Any]) -> None:
    """Refuse parameters MLflow would not log, before anything is unpacked or created (a
    refusal after the run exists left it SCHEDULED for ever)."""
    if len(parameters) > _MAX_PARAMETERS:
        raise InvalidSubmission(
            f"{len(parameters)} parameters were sent; a run takes at most {_MAX_PARAMETERS}."
        )
    for key, value in parameters.items():
        text = str(value)
        if "\0" in key or "\0" in text:
            raise InvalidSubmission(f"Parameter {shown(key)} holds a NUL character.")
        if len(key) > 250:
            raise InvalidSubmission(
                f"Parameter name {shown(key)} is longer than MLflow's 250 characters."
            )
        if len(text) > _MAX_PARAM_VALUE:  # MLflow would cut it: the run would not say
            raise InvalidSubmission(  # what the job ran with
                f"Parameter {shown(key)} is {len(text)} characters long; MLflow records at "
                f"most {_MAX_PARAM_VALUE}."
            )
        refusal = param_refusal(key, text)
        if refusal is not None:
            raise InvalidSubmission(f"Parameter {shown(key)} cannot be logged: {refusal[:500]}")


def inside(root: Path, relative: str, what: str) -> Path:
    """``root / relative``, refused if it leads out of ``root``."""
    path = (root / relative).resolve()
    if not path.is_relative_to(root.resolve()):
        raise InvalidSubmission(f"{what} {relative!r} lies outside the MLproject directory.")
    return path


def prepare(submission: Submission, staging: Path, max_unpacked_bytes: int) -> Prepared:
    """Check what is cheap to check, then unpack the project into ``staging`` and validate
    everything."""
    check_parameters(submission.parameters)
    config = precheck(
        submission.archive,
        submission.entry_point,
        submission.backend_config,
        submission.backend_config_path,
    )
    project_dir = staging / PROJECT
    try:
        safe_extract(
            submission.archive, project_dir, max_bytes=max_unpacked_bytes, max_ratio=_MAX_RATIO
        )
    except UnsafeArchive as exc:
        raise InvalidSubmission(f"The uploaded project was refused: {exc}") from exc
    try:
        project = load_project(project_dir, shown_as="the project")
        entry = project.entry_point(submission.entry_point)
        command = entry.render(
            submission.parameters, allow_undeclared=submission.allow_undeclared_params
        )
    except ConfigurationError as exc:
        raise InvalidSubmission(str(exc)) from exc
    return Prepared(config, command, entry.name, project_dir)
