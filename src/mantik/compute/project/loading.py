"""Finding and reading a project's ``MLproject`` file (case-insensitively, as MLflow does),
with every mistake reported by file, entry point and parameter."""

from __future__ import annotations

from pathlib import Path
from typing import Final

import yaml

from mantik._bounded import nesting_message, shown, too_deep
from mantik._exceptions import ConfigurationError
from mantik.compute.project.model import (
    PARAMETER_TYPES,
    EntryPoint,
    MLProject,
    Parameter,
    is_parameter_type,
)

_MLPROJECT = "mlproject"  # matched case-insensitively, as MLflow does


_ENV_FIELDS: Final = ("docker_env", "python_env", "conda_env")


# MLflow falls back to these files when the MLproject names no environment.
_DEFAULT_ENV_FILES: Final = (("python_env", "python_env.yaml"), ("conda_env", "conda.yaml"))


_ENTRY_POINT_KEYS: Final = ("command", "parameters")


_PARAMETER_KEYS: Final = ("type", "default")


def load_project(path: Path, *, shown_as: str | None = None) -> MLProject:
    """Read and check the MLproject of the project directory ``path``.

    Messages name the directory ``shown_as`` if given (the platform keeps its own paths
    to itself), else by its path.
    """
    if not path.exists():
        raise ConfigurationError(f"Project directory {path} does not exist.")
    if not path.is_dir():
        raise ConfigurationError(f"Project path {path} is not a directory.")
    path = path.resolve()
    spec_file = _find_mlproject(path, shown_as)
    spec_name = spec_file.name if spec_file else "MLproject"
    spec_shown = spec_name if shown_as else str(spec_file or path / spec_name)
    document = parse_mlproject(_read_text(spec_file, spec_shown), spec_shown) if spec_file else {}
    where = "MLproject" if shown_as else f"MLproject ({spec_shown})"

    name = document.get("name", path.name)
    if not isinstance(name, str) or not name:
        raise ConfigurationError(f"{where}: 'name' must be a non-empty string, got {shown(name)}.")
    if "databricks_spark_job" in document:
        raise ConfigurationError(f"{where}: 'databricks_spark_job' is not supported on HPC.")
    envs = [key for key in _ENV_FIELDS if document.get(key) is not None]
    if len(envs) > 1:
        raise ConfigurationError(f"{where}: give only one of {', '.join(envs)}.")

    docker_image = _docker_image(where, document.get("docker_env"))
    root_shown = shown_as or str(path)
    env_files = {
        key: _env_file(where, path, root_shown, key, document.get(key)) for key in _ENV_FIELDS[1:]
    }
    if not envs:
        for key, default in _DEFAULT_ENV_FILES:
            if (path / default).is_file():
                env_files[key] = default
                break
    return MLProject(
        name=name,
        path=path,
        entry_points=_entry_points(where, document.get("entry_points")),
        docker_image=docker_image,
        python_env=env_files["python_env"],
        conda_env=env_files["conda_env"],
    )


def _find_mlproject(directory: Path, shown_as: str | None) -> Path | None:
    found = sorted(p for p in directory.iterdir() if p.name.lower() == _MLPROJECT and p.is_file())
    if len(found) > 1:
        names = " and ".join(p.name for p in found)
        project = shown_as or f"Project {directory}"
        raise ConfigurationError(f"{project} has both {names}; keep only one.")
    return found[0] if found else None


def _read_text(spec_file: Path, spec_shown: str) -> str:
    try:
        return spec_file.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigurationError(f"{spec_shown} is not UTF-8 text: {exc.reason}") from None
    except OSError as exc:
        raise ConfigurationError(f"Cannot read {spec_shown}: {exc.strerror or exc}") from None


def parse_mlproject(text: str, spec_file: str = "MLproject") -> dict[str, object]:
    """The MLproject document in ``text`` as a mapping (``spec_file`` names it in messages);
    only its YAML and top-level shape are checked."""
    try:
        document: object = yaml.safe_load(text)
    except RecursionError:
        raise ConfigurationError(nesting_message(spec_file)) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigurationError(
            f"{spec_file} is not valid YAML{at}: {exc.problem or exc.context}"
        ) from exc
    except yaml.YAMLError as exc:
        raise ConfigurationError(f"{spec_file} is not valid YAML: {exc}") from exc
    if document is None:
        return {}
    if too_deep(document):
        raise ConfigurationError(nesting_message(spec_file))
    if not isinstance(document, dict):
        raise ConfigurationError(
            f"{spec_file} must be a YAML mapping (name, entry_points, ...), "
            f"got {type(document).__name__}."
        )
    return {str(key): value for key, value in document.items()}


def _docker_image(where: str, docker_env: object) -> str | None:
    if docker_env is None:
        return None
    if not isinstance(docker_env, dict):
        raise ConfigurationError(f"{where}: 'docker_env' must be a mapping with an 'image' key.")
    image = docker_env.get("image")
    if not isinstance(image, str) or not image:
        raise ConfigurationError(f"{where}: 'docker_env.image' must name an image.")
    volumes = docker_env.get("volumes")
    if volumes and not (isinstance(volumes, list) and all(isinstance(v, str) for v in volumes)):
        raise ConfigurationError(
            f"{where}: 'docker_env.volumes' must be a list of strings, e.g. ['/data:/data']."
        )
    environment = docker_env.get("environment")
    if environment and not (
        isinstance(environment, list) and all(isinstance(v, str | list) for v in environment)
    ):
        raise ConfigurationError(
            f"{where}: 'docker_env.environment' must be a list of variable names to copy "
            "and [name, value] pairs, e.g. ['HOME', ['MODE', 'fast']]."
        )
    return image


def _env_file(where: str, root: Path, root_shown: str, key: str, value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise ConfigurationError(f"{where}: '{key}' must be the path of a file in the project.")
    resolved_root = root.resolve()
    target = (resolved_root / value).resolve()
    if not target.is_relative_to(resolved_root):
        raise ConfigurationError(
            f"{where}: '{key}' file {shown(value)} is outside the project; only the project "
            "directory is uploaded, so move the file into it."
        )
    if not target.is_file():
        raise ConfigurationError(f"{where}: '{key}' file {shown(value)} not found in {root_shown}.")
    return value


def _entry_points(where: str, spec: object) -> dict[str, EntryPoint]:
    if spec is None:
        return {}
    if not isinstance(spec, dict):
        raise ConfigurationError(
            f"{where}: 'entry_points' must be a mapping of entry point names to "
            f"{{command, parameters}}, got {type(spec).__name__}."
        )
    entry_points: dict[str, EntryPoint] = {}
    for name, body in spec.items():
        if not isinstance(name, str):
            raise ConfigurationError(f"{where}: entry point name {shown(name)} must be a string.")
        here = f"{where}, entry point {shown(name)}"
        if not isinstance(body, dict):
            raise ConfigurationError(f"{here}: must be a mapping with 'command' and 'parameters'.")
        unknown = [str(key) for key in body if key not in _ENTRY_POINT_KEYS]
        if unknown:
            raise ConfigurationError(
                f"{here}: unknown key(s) {_listed(unknown)}; "
                f"valid keys: {', '.join(_ENTRY_POINT_KEYS)}."
            )
        command = body.get("command")
        if not isinstance(command, str) or not command.strip():
            raise ConfigurationError(f"{here}: 'command' must be a non-empty string.")
        try:
            parameters = _parameters(body.get("parameters"))
            entry_points[name] = EntryPoint(name=name, command=command, parameters=parameters)
        except ConfigurationError as exc:
            raise ConfigurationError(f"{here}: {exc}") from None
    return entry_points


def _parameters(spec: object) -> dict[str, Parameter]:
    if spec is None:
        return {}
    if not isinstance(spec, dict):
        raise ConfigurationError(
            "'parameters' must be a mapping of names to a type or to {type, default}."
        )
    parameters: dict[str, Parameter] = {}
    for name, body in spec.items():
        if not isinstance(name, str):
            raise ConfigurationError(f"parameter name {shown(name)} must be a string.")
        kind: object = "string"
        default: object = None
        if isinstance(body, str):  # short form, `alpha: float`
            kind = body
        elif isinstance(body, dict):
            unknown = [str(key) for key in body if key not in _PARAMETER_KEYS]
            if unknown:
                raise ConfigurationError(
                    f"parameter {shown(name)} has unknown key(s) {_listed(unknown)}; "
                    f"valid keys: {', '.join(_PARAMETER_KEYS)}."
                )
            kind = body.get("type", "string")
            default = body.get("default")
        elif body is not None:
            raise ConfigurationError(
                f"parameter {shown(name)} must be a type (e.g. float) or {{type, default}}, "
                f"got {shown(body)}."
            )
        if not is_parameter_type(kind):
            raise ConfigurationError(
                f"parameter {shown(name)} has unknown type {shown(kind)}; "
                f"use one of: {', '.join(PARAMETER_TYPES)}."
            )
        if default is not None and not isinstance(default, str | int | float):
            raise ConfigurationError(
                f"parameter {shown(name)} has a default {shown(default)}; give a single value."
            )
        # MLflow substitutes str(default): YAML `0.1` becomes "0.1", `true` becomes "True".
        text = None if default is None else str(default)
        parameters[name] = Parameter(name=name, type=kind, default=text)
    return parameters


def _listed(keys: list[str], most: int = 10) -> str:
    quoted = ", ".join(shown(key, 60) for key in keys[:most])
    return quoted + (f" and {len(keys) - most} more" if len(keys) > most else "")
