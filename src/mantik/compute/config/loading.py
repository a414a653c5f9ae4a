"""Reading a backend config: from JSON or YAML (duplicate keys refused), validated into a
:class:`~mantik.compute.config.model.BackendConfig`, with a clear error on any problem."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml
from pydantic import (
    ValidationError,
)

from mantik._bounded import nesting_message, too_deep
from mantik._exceptions import ConfigurationError
from mantik.compute.config.messages import describe, kind_of
from mantik.compute.config.model import BackendConfig


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, refusing duplicate keys (the last one would silently win)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[object] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if not isinstance(key, str | int | float | bool):
                continue  # unhashable or odd keys: the model refuses them later
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _unique_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"duplicate key {key!r}")
        result[key] = value
    return result


def _from_json(text: str, source: str) -> object:
    try:
        return json.loads(text, object_pairs_hook=_unique_pairs)
    except json.JSONDecodeError as exc:
        raise ConfigurationError(
            f"{source} is not valid JSON (line {exc.lineno}, column {exc.colno}): {exc.msg}"
        ) from exc
    except ValueError as exc:  # duplicate key
        raise ConfigurationError(f"{source} is not valid: {exc}") from exc
    except RecursionError:
        raise ConfigurationError(nesting_message(source)) from None


def _from_yaml(text: str, source: str) -> object:
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigurationError(f"{source} is not valid YAML{where}: {problem}") from exc
    except RecursionError:
        raise ConfigurationError(nesting_message(source)) from None


def validate_backend_config(data: object, *, source: str = "the backend config") -> BackendConfig:
    """Validate parsed data; every problem goes into one :class:`ConfigurationError`.

    ``source`` names the file (or form field) in the message.
    """
    if too_deep(data):
        raise ConfigurationError(nesting_message(source))
    if not isinstance(data, dict):
        raise ConfigurationError(
            f"{source} must contain a mapping (a JSON object) of keys such as "
            f"SingularityImage and Resources at the top level, got {kind_of(data)}"
        )
    try:
        return BackendConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigurationError(describe(exc, source)) from None


def parse_backend_config(
    text: str, *, source: str = "the backend config", suffix: str = ""
) -> BackendConfig:
    """Parse and validate JSON (``suffix=".json"``) or YAML (``".yaml"``, ``".yml"``) text.

    With another suffix, JSON is tried first, then YAML.
    """
    if not text.strip():
        raise ConfigurationError(
            f"{source} is empty; it needs a mapping of keys such as SingularityImage, Resources"
        )
    suffix = suffix.lower()
    if suffix == ".json":
        data = _from_json(text, source)
    elif suffix in (".yaml", ".yml"):
        data = _from_yaml(text, source)
    else:
        try:
            data = _from_json(text, source)
        except ConfigurationError as json_error:
            try:
                data = _from_yaml(text, source)
            except ConfigurationError as yaml_error:
                as_json = str(json_error).removeprefix(f"{source} is not valid JSON ")
                raise ConfigurationError(f"{yaml_error}; nor JSON {as_json}") from None
    return validate_backend_config(data, source=source)


def load_backend_config(path: Path, *, source: str | None = None) -> BackendConfig:
    """Load ``path`` (JSON, or YAML for ``.yaml``/``.yml``) and validate it.

    Raises :class:`ConfigurationError` naming the file (as ``source`` if given), each bad
    key and the fix.
    """
    path = Path(path)
    source = source or str(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise ConfigurationError(f"Backend config file {source} does not exist") from None
    except IsADirectoryError:
        raise ConfigurationError(f"Backend config {source} is a directory, not a file") from None
    except UnicodeDecodeError as exc:
        raise ConfigurationError(f"{source} is not UTF-8 text: {exc.reason}") from None
    except OSError as exc:
        raise ConfigurationError(f"Cannot read {source}: {exc.strerror or exc}") from None
    return parse_backend_config(text, source=source, suffix=path.suffix)
