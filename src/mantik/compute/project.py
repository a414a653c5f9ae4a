"""MLproject files, read the way MLflow reads them.

MLflow's parser (``mlflow.projects._project_spec``) is private, so we keep our own with the
same behaviour: the ``MLproject`` file is found case-insensitively (a project without one
runs ``.py``/``.sh`` files directly), parameters are typed (float, int, string, path, uri)
with optional defaults, undeclared parameters are kept, and a command is rendered with
``str.format`` over ``shlex.quote``-d values plus ``--name value`` for the extras.

Unlike MLflow, every mistake is found before anything is uploaded and reported as a
:class:`~mantik.ConfigurationError` naming the file, entry point and parameter::

    project = load_project(Path("my-project"))
    line = project.entry_point("main").render({"alpha": 0.5})
"""

from __future__ import annotations

import os
import shlex
import string
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Literal, TypeGuard, get_args

import yaml

from mantik._exceptions import ConfigurationError

ParameterType = Literal["float", "int", "string", "path", "uri"]
PARAMETER_TYPES: Final[tuple[str, ...]] = get_args(ParameterType)

_MLPROJECT = "mlproject"  # matched case-insensitively, as MLflow does
_ENV_FIELDS: Final = ("docker_env", "python_env", "conda_env")
# MLflow falls back to these files when the MLproject names no environment.
_DEFAULT_ENV_FILES: Final = (("python_env", "python_env.yaml"), ("conda_env", "conda.yaml"))
_ENTRY_POINT_KEYS: Final = ("command", "parameters")
_PARAMETER_KEYS: Final = ("type", "default")
# MLflow uses $SHELL for .sh files; the shell of the submitting laptop means nothing on a
# compute node, so we use bash.
_SCRIPT_RUNNERS: Final = {".py": "python", ".sh": "bash"}


@dataclass(frozen=True)
class Parameter:
    """A typed parameter of an entry point; ``default=None`` means it is required."""

    name: str
    type: ParameterType = "string"
    default: str | None = None

    def __post_init__(self) -> None:
        if not _is_parameter_type(self.type):
            raise ConfigurationError(
                f"parameter {self.name!r} has unknown type {self.type!r}; "
                f"use one of: {', '.join(PARAMETER_TYPES)}."
            )
        if self.default is not None and (problem := _type_problem(self.type, self.default)):
            raise ConfigurationError(
                f"parameter {self.name!r} has type {self.type}, "
                f"but its default {self.default!r} {problem}."
            )

    @property
    def required(self) -> bool:
        return self.default is None


@dataclass(frozen=True)
class EntryPoint:
    """A command template with typed ``{placeholders}``.

    >>> ep = EntryPoint("main", "python train.py --alpha {alpha}",
    ...                 {"alpha": Parameter("alpha", "float", "0.1")})
    >>> ep.render({"alpha": 0.5, "seed": 3})
    'python train.py --alpha 0.5 --seed 3'
    """

    name: str
    command: str
    parameters: dict[str, Parameter] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _check_command(self.name, self.command, self.parameters)

    def validate(self, params: Mapping[str, object]) -> dict[str, str]:
        """Declared parameters (defaults filled in) then extra ones, as text.

        Every problem (missing values, values not of the declared type) is reported in
        one :class:`ConfigurationError`.
        """
        problems: list[str] = []
        given: dict[str, str] = {}
        for key, value in params.items():
            text = _as_text(key, value, problems)
            if text is not None:
                given[key] = text
        missing = [name for name, p in self.parameters.items() if p.required and name not in params]
        if missing:
            names = ", ".join(repr(name) for name in missing)
            problems.insert(0, f"no value given for required parameter(s) {names}")
        values: dict[str, str] = {}
        for name, parameter in self.parameters.items():
            value = given.get(name, parameter.default)
            if value is None:
                continue
            if name in given and (problem := _type_problem(parameter.type, value)):
                problems.append(
                    f"parameter {name!r} has type {parameter.type}, but {value!r} {problem}"
                )
            values[name] = value
        values.update((key, text) for key, text in given.items() if key not in self.parameters)
        if problems:
            raise ConfigurationError(_problem_message(f"entry point {self.name!r}", problems))
        return values

    def render(self, params: Mapping[str, object]) -> str:
        """The shell command line, safe to run with ``bash -c``; values reach the program
        unchanged whatever characters they hold.
        """
        values = self.validate(params)
        quoted = {name: shlex.quote(values[name]) for name in self.parameters}
        words = [self.command.format(**quoted)]
        words += [
            f"--{shlex.quote(key)} {shlex.quote(value)}"
            for key, value in values.items()
            if key not in self.parameters
        ]
        return " ".join(words)


@dataclass(frozen=True)
class MLProject:
    """An MLflow project directory (``path`` is absolute).

    ``python_env``/``conda_env`` are paths relative to the project, including MLflow's
    fallbacks ``python_env.yaml`` and ``conda.yaml`` when the MLproject names none.
    """

    name: str
    path: Path
    entry_points: dict[str, EntryPoint] = field(default_factory=dict)
    docker_image: str | None = None
    python_env: str | None = None
    conda_env: str | None = None

    def entry_point(self, name: str) -> EntryPoint:
        """The entry point called ``name``; like MLflow, a ``.py`` or ``.sh`` file of the
        project is an entry point without parameters even if the MLproject omits it.
        """
        if name in self.entry_points:
            return self.entry_points[name]
        runner = _SCRIPT_RUNNERS.get(os.path.splitext(name)[1])
        if runner is not None and self._holds_file(name):
            command = f"{runner} {shlex.quote(name)}".replace("{", "{{").replace("}", "}}")
            return EntryPoint(name=name, command=command)
        available = ", ".join(repr(n) for n in self.entry_points) or "none"
        raise ConfigurationError(
            f"Unknown entry point {name!r} in project {self.path}. Entry points in the "
            f"MLproject: {available}; or give the path of a .py or .sh file in the project."
        )

    def _holds_file(self, name: str) -> bool:
        if os.path.isabs(name):
            return False
        root = self.path.resolve()
        target = (root / name).resolve()
        return target.is_relative_to(root) and target.is_file()


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
        if not _is_parameter_type(kind):
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


def _check_command(entry_point: str, command: str, parameters: Mapping[str, Parameter]) -> None:
    # MLflow runs command.format(**params): a stray brace or an undeclared placeholder would
    # only fail on the compute node, so catch it now.
    where = f"entry point {entry_point!r}: command {command!r}"
    try:
        fields = [f for _, f, _, _ in string.Formatter().parse(command) if f is not None]
    except ValueError as exc:
        raise ConfigurationError(
            f"{where} has unbalanced braces ({exc}); write {{{{ and }}}} for literal braces."
        ) from None
    for name in fields:
        root = name.split(".", 1)[0].split("[", 1)[0]
        if root not in parameters:
            declared = ", ".join(parameters) or "none"
            raise ConfigurationError(
                f"{where} uses {{{name}}}, which is not a declared parameter "
                f"(declared: {declared}); declare it under 'parameters' or write {{{{ }}}}."
            )
    try:
        command.format(**{name: "x" for name in parameters})
    except (AttributeError, IndexError, KeyError, TypeError, ValueError) as exc:
        raise ConfigurationError(f"{where} cannot be formatted: {exc}.") from None


def _as_text(key: object, value: object, problems: list[str]) -> str | None:
    if not isinstance(key, str) or not key:
        problems.append(f"parameter name {key!r} must be a non-empty string")
        return None
    text: object = None
    if isinstance(value, str | int | float):  # bool is an int: str(True) == "True", as MLflow
        text = str(value)
    elif isinstance(value, os.PathLike):
        text = os.fspath(value)
    if not isinstance(text, str):
        problems.append(f"parameter {key!r} has value {value!r}; give a string, number or path")
        return None
    if "\0" in text or "\0" in key:
        problems.append(f"parameter {key!r} contains a NUL character, which no program can receive")
        return None
    return text


def _type_problem(kind: str, value: str) -> str | None:
    """Why ``value`` is not a valid ``kind`` (e.g. "is not an int"), or None."""
    convert = {"float": float, "int": int}.get(kind)
    if convert is not None:
        try:
            convert(value)
        except ValueError:
            return f"is not {'an' if kind == 'int' else 'a'} {kind}"
    # As MLflow: any value with a scheme (s3://, https://, file:/...) is a URI.
    if kind == "uri" and not urllib.parse.urlparse(value).scheme:
        return "is not a URI (it has no scheme, as in s3://bucket/key)"
    return None


def _problem_message(subject: str, problems: list[str]) -> str:
    if len(problems) == 1:
        return f"Invalid parameters for {subject}: {problems[0]}."
    listing = "\n".join(f"  - {problem}" for problem in problems)
    return f"Invalid parameters for {subject}:\n{listing}"


def _is_parameter_type(value: object) -> TypeGuard[ParameterType]:
    return value in PARAMETER_TYPES
