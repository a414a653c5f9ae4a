"""Finding and reading a project's ``MLproject`` file (case-insensitively, as MLflow does),
with every mistake reported by file, entry point and parameter."""

from __future__ import annotations

from pathlib import Path
from typing import Final

import yaml

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


def load_project(path: Path) -> MLProject:
    """Read and check the MLproject of the project directory ``path``."""
    if not path.exists():
        raise ConfigurationError(f"Project directory {path} does not exist.")
    if not path.is_dir():
        raise ConfigurationError(f"Project path {path} is not a directory.")
    path = path.resolve()
    spec_file = _find_mlproject(path)
    document = _read_yaml(spec_file) if spec_file is not None else {}
    where = f"MLproject ({spec_file or path / 'MLproject'})"

    name = document.get("name", path.name)
    if not isinstance(name, str) or not name:
        raise ConfigurationError(f"{where}: 'name' must be a non-empty string, got {name!r}.")
    if "databricks_spark_job" in document:
        raise ConfigurationError(f"{where}: 'databricks_spark_job' is not supported on HPC.")
    envs = [key for key in _ENV_FIELDS if document.get(key) is not None]
    if len(envs) > 1:
        raise ConfigurationError(f"{where}: give only one of {', '.join(envs)}.")

    docker_image = _docker_image(where, document.get("docker_env"))
    env_files = {key: _env_file(where, path, key, document.get(key)) for key in _ENV_FIELDS[1:]}
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


def _find_mlproject(directory: Path) -> Path | None:
    found = sorted(p for p in directory.iterdir() if p.name.lower() == _MLPROJECT and p.is_file())
    if len(found) > 1:
        names = " and ".join(p.name for p in found)
        raise ConfigurationError(f"Project {directory} has both {names}; keep only one.")
    return found[0] if found else None


def _read_yaml(spec_file: Path) -> dict[str, object]:
    try:
        text = spec_file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigurationError(f"Cannot read {spec_file}: {exc}") from exc
    try:
        document: object = yaml.safe_load(text)
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


def _env_file(where: str, root: Path, key: str, value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise ConfigurationError(f"{where}: '{key}' must be the path of a file in the project.")
    resolved_root = root.resolve()
    target = (resolved_root / value).resolve()
    if not target.is_relative_to(resolved_root):
        raise ConfigurationError(
            f"{where}: '{key}' file {value!r} is outside the project; only the project "
            "directory is uploaded, so move the file into it."
        )
    if not target.is_file():
        raise ConfigurationError(f"{where}: '{key}' file {value!r} not found in {root}.")
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
            raise ConfigurationError(f"{where}: entry point name {name!r} must be a string.")
        here = f"{where}, entry point {name!r}"
        if not isinstance(body, dict):
            raise ConfigurationError(f"{here}: must be a mapping with 'command' and 'parameters'.")
        unknown = [str(key) for key in body if key not in _ENTRY_POINT_KEYS]
        if unknown:
            raise ConfigurationError(
                f"{here}: unknown key(s) {', '.join(map(repr, unknown))}; "
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
            raise ConfigurationError(f"parameter name {name!r} must be a string.")
        kind: object = "string"
        default: object = None
        if isinstance(body, str):  # short form, `alpha: float`
            kind = body
        elif isinstance(body, dict):
            unknown = [str(key) for key in body if key not in _PARAMETER_KEYS]
            if unknown:
                raise ConfigurationError(
                    f"parameter {name!r} has unknown key(s) {', '.join(map(repr, unknown))}; "
                    f"valid keys: {', '.join(_PARAMETER_KEYS)}."
                )
            kind = body.get("type", "string")
            default = body.get("default")
        elif body is not None:
            raise ConfigurationError(
                f"parameter {name!r} must be a type (e.g. float) or {{type, default}}, "
                f"got {body!r}."
            )
        if not is_parameter_type(kind):
            raise ConfigurationError(
                f"parameter {name!r} has unknown type {kind!r}; "
                f"use one of: {', '.join(PARAMETER_TYPES)}."
            )
        if default is not None and not isinstance(default, str | int | float):
            raise ConfigurationError(
                f"parameter {name!r} has a default {default!r}; give a single value."
            )
        # MLflow substitutes str(default): YAML `0.1` becomes "0.1", `true` becomes "True".
        text = None if default is None else str(default)
        parameters[name] = Parameter(name=name, type=kind, default=text)
    return parameters
