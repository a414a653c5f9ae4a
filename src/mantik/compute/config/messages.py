"""Error messages for a backend config that does not validate: each problem by its key path,
with the valid keys (and the closest one) for a key that does not exist."""

from __future__ import annotations

import difflib
import json
from typing import Any, Final

from pydantic import (
    BaseModel,
    ValidationError,
)

from mantik._bounded import shown
from mantik.compute.config.model import BackendConfig, Resources

_MAX_KEY: Final = 80  # characters of a key path a message quotes
_MAX_DETAIL: Final = 400  # characters of one problem's description
_MAX_PROBLEMS: Final = 10  # problems listed in one message; the rest are counted


def _key_path(loc: tuple[int | str, ...]) -> str:
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        elif part != "[key]":
            text += f".{part}" if text else str(part)
    return text if len(text) <= _MAX_KEY else f"{text[: _MAX_KEY - 3]}..."


def _cut(detail: str) -> str:
    # Validators quote values (a Runtime of a million digits): keep each problem short.
    return detail if len(detail) <= _MAX_DETAIL else f"{detail[: _MAX_DETAIL - 3]}..."


def _aliases(model: type[BaseModel]) -> list[str]:
    return sorted(f.alias or name for name, f in model.model_fields.items())


def _model_at(loc: tuple[int | str, ...]) -> type[BaseModel] | None:
    model: type[BaseModel] = BackendConfig
    for part in loc:
        field = next((f for name, f in model.model_fields.items() if part in (name, f.alias)), None)
        annotation = field.annotation if field else None
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return None
        model = annotation
    return model


def _normal(key: str) -> str:
    return key.lower().replace("_", "").replace("-", "").replace(" ", "")


def _closest(key: str, valid: list[str]) -> str | None:
    by_normal = {_normal(v): v for v in valid}
    if _normal(key) in by_normal:
        return by_normal[_normal(key)]
    match = difflib.get_close_matches(_normal(key), list(by_normal), n=1, cutoff=0.6)
    return by_normal[match[0]] if match else None


def _unknown_key(loc: tuple[int | str, ...]) -> str:
    parent, key = loc[:-1], str(loc[-1])
    model = _model_at(parent)
    if model is None:  # not reachable with today's models; stay useful anyway
        return "is not a known key"
    valid = _aliases(model)
    listing = f"Valid keys: {', '.join(valid)}"
    same = {_normal(k): k for k in _aliases(Resources if model is BackendConfig else BackendConfig)}
    if model is BackendConfig and _normal(key) in same:
        inner = same[_normal(key)]
        return f"did you mean 'Resources.{inner}'? It belongs inside Resources. {listing}"
    if model is Resources and _normal(key) in same:
        return f"'{same[_normal(key)]}' belongs at the top level, not inside Resources. {listing}"
    suggestion = _closest(key, valid)
    return f"did you mean '{suggestion}'? {listing}" if suggestion else listing


def _shown(value: object) -> str:
    if isinstance(value, str):  # as JSON writes it, cut short
        return json.dumps(value[:57]) + ("..." if len(value) > 57 else "")
    return shown(value, 60)


def kind_of(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return json.dumps(value)
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    if isinstance(value, int | float):
        return f"the number {value}"
    return _shown(value)


def _detail(error: Any) -> str:
    kind, value, ctx = error["type"], error.get("input"), error.get("ctx") or {}
    if kind in ("value_error", "assertion_error") and "error" in ctx:
        return str(ctx["error"])
    if kind == "string_type":
        return f"must be a string, got {kind_of(value)}"
    if kind in ("int_type", "int_parsing", "int_from_float"):
        return f"must be a whole number, got {kind_of(value)}"
    if kind == "greater_than" and ctx.get("gt") == 0:
        return f"must be a positive whole number, got {_shown(value)}"
    if kind == "greater_than":
        return f"must be greater than {ctx['gt']}, got {_shown(value)}"
    if kind == "greater_than_equal":
        return f"must be at least {ctx['ge']}, got {_shown(value)}"
    if kind in ("string_too_short", "too_short"):
        return "must not be empty (leave the key out instead)"
    if kind in ("list_type", "tuple_type"):
        return f'must be a list of strings, e.g. ["a", "b"], got {kind_of(value)}'
    if kind in ("dict_type", "model_type", "model_attributes_type"):
        return f"must be a mapping (a JSON object) of keys to values, got {kind_of(value)}"
    if kind == "literal_error":
        return f"must be one of {ctx['expected']}, got {_shown(value)}"
    if kind == "invalid_key":
        return "keys must be strings"
    return str(error["msg"])


def describe(exc: ValidationError, source: str) -> str:
    items: list[tuple[str, str | None, str]] = []  # (headline, key, detail)
    errors = exc.errors(include_url=False)
    for error in errors[:_MAX_PROBLEMS]:
        loc = tuple(error["loc"])
        if error["type"] == "extra_forbidden":
            items.append(("Unknown key", _key_path(loc), _unknown_key(loc)))
        elif not loc:
            items.append(("Conflicting keys", None, _detail(error)))
        elif loc[-1] == "[key]":
            items.append(("Bad variable name in", _key_path(loc[:-2]), _detail(error)))
        else:
            items.append(("Bad value for", _key_path(loc), _detail(error)))
    items = [(headline, key, _cut(detail)) for headline, key, detail in items]
    if len(errors) == 1:
        headline, key, detail = items[0]
        named = f"{headline} '{key}'" if key is not None else headline
        return f"{named} in {source}: {detail}"
    parts = [
        f"{headline.lower()} '{key}': {detail}" if key is not None else detail
        for headline, key, detail in items
    ]
    more = len(errors) - len(items)
    rest = f"; and {more} more" if more else ""
    return f"{len(errors)} problems in {source}: " + "; ".join(parts) + rest
