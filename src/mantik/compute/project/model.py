"""An MLflow project as mantik sees it: entry points with typed parameters (float, int,
string, path, uri), validated and rendered into a shell command line."""

from __future__ import annotations

import difflib
import os
import shlex
import string
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Literal, TypeGuard, get_args

from mantik._bounded import shown
from mantik._exceptions import ConfigurationError

ParameterType = Literal["float", "int", "string", "path", "uri"]


PARAMETER_TYPES: Final[tuple[str, ...]] = get_args(ParameterType)


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
        if not is_parameter_type(self.type):
            raise ConfigurationError(
                f"parameter {shown(self.name)} has unknown type {shown(self.type)}; "
                f"use one of: {', '.join(PARAMETER_TYPES)}."
            )
        if self.default is not None and (problem := _type_problem(self.type, self.default)):
            raise ConfigurationError(
                f"parameter {shown(self.name)} has type {self.type}, "
                f"but its default {shown(self.default)} {problem}."
            )

    @property
    def required(self) -> bool:
        return self.default is None


@dataclass(frozen=True)
class EntryPoint:
    """A command template with typed ``{placeholders}``.

    >>> ep = EntryPoint("main", "python train.py --alpha {alpha}",
    ...                 {"alpha": Parameter("alpha", "float", "0.1")})
    >>> ep.render({"alpha": 0.5, "seed": 3}, allow_undeclared=True)
    'python train.py --alpha 0.5 --seed 3'

    An entry point that declares parameters refuses undeclared ones (a typo would reach
    the program as an unknown option) unless ``allow_undeclared`` passes them on as
    ``--name value``, as MLflow does; one that declares none always passes them on.
    """

    name: str
    command: str
    parameters: dict[str, Parameter] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _check_command(self.name, self.command, self.parameters)

    def validate(
        self, params: Mapping[str, object], *, allow_undeclared: bool = False
    ) -> dict[str, str]:
        """Declared parameters (defaults filled in) then extra ones, as text.

        Every problem (missing values, values not of the declared type, undeclared names
        unless ``allow_undeclared``) is reported in one :class:`ConfigurationError`.
        """
        problems: list[str] = []
        if self.parameters and not allow_undeclared:
            problems += [self._undeclared(key) for key in params if key not in self.parameters]
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
                    f"parameter {shown(name)} has type {parameter.type}, "
                    f"but {shown(value)} {problem}"
                )
            values[name] = value
        values.update((key, text) for key, text in given.items() if key not in self.parameters)
        if problems:
            raise ConfigurationError(_problem_message(f"entry point {shown(self.name)}", problems))
        return values

    def _undeclared(self, key: object) -> str:
        close = difflib.get_close_matches(str(key), list(self.parameters), n=1)
        hint = f"did you mean {shown(close[0])}? " if close else ""
        declared = ", ".join(self.parameters)
        return (
            f"parameter {shown(key)} is not declared ({hint}declared: {declared}; "
            "--allow-undeclared-params or allow_undeclared_params=True passes it on as "
            "--name value)"
        )

    def render(self, params: Mapping[str, object], *, allow_undeclared: bool = False) -> str:
        """The shell command line, safe to run with ``bash -c``; values reach the program
        unchanged whatever characters they hold.
        """
        values = self.validate(params, allow_undeclared=allow_undeclared)
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
            f"Unknown entry point {shown(name)} in project {self.path}. Entry points in the "
            f"MLproject: {available}; or give the path of a .py or .sh file in the project."
        )

    def _holds_file(self, name: str) -> bool:
        if os.path.isabs(name):
            return False
        root = self.path.resolve()
        target = (root / name).resolve()
        return target.is_relative_to(root) and target.is_file()


def _check_command(entry_point: str, command: str, parameters: Mapping[str, Parameter]) -> None:
    # MLflow runs command.format(**params): a stray brace or an undeclared placeholder would
    # only fail on the compute node, so catch it now.
    where = f"entry point {shown(entry_point)}: command {shown(command)}"
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
        problems.append(f"parameter name {shown(key)} must be a non-empty string")
        return None
    text: object = None
    if isinstance(value, str | int | float):  # bool is an int: str(True) == "True", as MLflow
        text = str(value)
    elif isinstance(value, os.PathLike):
        text = os.fspath(value)
    if not isinstance(text, str):
        problems.append(
            f"parameter {shown(key)} has value {shown(value)}; give a string, number or path"
        )
        return None
    if "\0" in text or "\0" in key:
        problems.append(
            f"parameter {shown(key)} contains a NUL character, which no program can receive"
        )
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


def is_parameter_type(value: object) -> TypeGuard[ParameterType]:
    return value in PARAMETER_TYPES
