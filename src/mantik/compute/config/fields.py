"""The field types of a backend config: pydantic annotations with their validators (single
lines, environment names, URLs, image paths, units)."""

from __future__ import annotations

import json
import re
from typing import Annotated
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BeforeValidator,
    Field,
    WithJsonSchema,
)

from mantik._bounded import shown
from mantik.compute.config.units import parse_memory, parse_runtime

_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_RESERVED_PREFIXES = ("MLFLOW_", "MANTIK_")
_SITE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


def _single_line(value: str) -> str:
    # These strings end up in batch scripts and command lines: no control characters.
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise ValueError("must be one line without control characters (newline, tab, …)")
    return value


def no_nul(value: str) -> str:
    if "\0" in value:
        raise ValueError("must not contain a NUL character")
    return value


def _int_as_str(value: object) -> object:
    # YAML reads `Reservation: 12345` as a number; it is a name.
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


def no_bool(value: object) -> object:
    if isinstance(value, bool):
        raise ValueError(f"must be a whole number, got {json.dumps(value)}")
    return value


def _env_value(value: object) -> object:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return value


def _env_name(name: str) -> str:
    if not _ENV_NAME.fullmatch(name):
        raise ValueError(
            f"{shown(name)} is not a valid variable name: use letters, digits and '_', "
            "not starting with a digit (e.g. MY_VAR)"
        )
    if name.startswith(_RESERVED_PREFIXES):
        raise ValueError(
            f"{shown(name)} is reserved: the platform sets MLFLOW_* and MANTIK_* variables "
            "for the job itself; choose another name"
        )
    return name


def http_url(value: str) -> str:
    parts = urlsplit(value)
    if (
        parts.scheme not in ("https", "http")
        or not parts.hostname
        or any(c.isspace() for c in value)
    ):
        raise ValueError(
            f"{shown(value)} is not an http(s) URL; write e.g. "
            '"https://zam2125.zam.kfa-juelich.de:9112/JUWELS/rest/core"'
        )
    return value


def local_image(value: str) -> str:
    if "://" in value:
        raise ValueError(
            f"{shown(value)} is not a file path: give the path of a local image file (relative to "
            "the MLproject directory, or absolute); for an image already on the site use "
            "RemoteImage"
        )
    return value


def absolute(value: str) -> str:
    if not value.startswith("/"):
        raise ValueError(
            f"{shown(value)} must be an absolute path on the site, e.g. /p/images/x.sif"
        )
    return value


def module_name(value: str) -> str:
    if any(c.isspace() for c in value):
        raise ValueError(f"{shown(value)} contains spaces: give one module per list item")
    return value


def site_name(value: str) -> str:
    if not _SITE_NAME.fullmatch(value):
        raise ValueError(f"{shown(value)} is not a site name (letters, digits, '.', '_', '-')")
    return value


# One line of a batch script; longer is no path, URL or option anyone writes.
Line = Annotated[str, Field(min_length=1, max_length=4096), AfterValidator(_single_line)]
Name = Annotated[
    str, Field(min_length=1), AfterValidator(_single_line), BeforeValidator(_int_as_str)
]
# SLURM and UNICORE count in 32 bits.
Count = Annotated[int, Field(gt=0, lt=2**31), BeforeValidator(no_bool)]
Runtime = Annotated[
    int,
    BeforeValidator(parse_runtime),
    WithJsonSchema(
        {
            "anyOf": [{"type": "integer", "exclusiveMinimum": 0}, {"type": "string"}],
            "description": 'Seconds, or e.g. "30m", "12h", "1d", "1h30m", "HH:MM:SS", '
            '"D-HH:MM:SS". Stored as seconds.',
            "examples": ["12h", "1h30m", "02:00:00", 3600],
        }
    ),
]
Memory = Annotated[
    int,
    BeforeValidator(parse_memory),
    WithJsonSchema(
        {
            "anyOf": [{"type": "integer", "exclusiveMinimum": 0}, {"type": "string"}],
            "description": 'Bytes, or e.g. "12G", "12GiB", "12GB", "500M", "1T", "2048K" '
            "(multiples of 1024). Memory per node. Stored as bytes.",
            "examples": ["12GiB", "500M", 1073741824],
        }
    ),
]
EnvName = Annotated[
    str,
    AfterValidator(_env_name),
    WithJsonSchema({"type": "string", "pattern": f"^{_ENV_NAME.pattern}$"}),
]
EnvValue = Annotated[
    str,
    BeforeValidator(_env_value),
    AfterValidator(no_nul),
    WithJsonSchema({"type": ["string", "number", "boolean"]}),
]
