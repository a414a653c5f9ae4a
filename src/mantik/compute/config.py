"""The backend configuration of a compute run (the guide's ``compute-backend-config.json``).

The client loads it from JSON or YAML and validates it before uploading anything; it sends
:meth:`BackendConfig.to_wire` and the platform validates that again with the same model.
Units are parsed once: ``Resources.runtime`` is in seconds, ``Resources.memory`` in bytes;
:func:`unicore_runtime` and :func:`unicore_memory` render them as UNICORE wants them (also
shown by ``mantik config``); the platform's SLURM driver renders its own.

Client-side module: imports only pydantic, pyyaml and the standard library.
"""

from __future__ import annotations

import difflib
import json
import math
import re
from fractions import Fraction
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    WithJsonSchema,
    model_validator,
)

from mantik._exceptions import ConfigurationError

KIB = 1024
MIB = 1024**2
GIB = 1024**3
TIB = 1024**4

_MINUTE, _HOUR, _DAY = 60, 3600, 86400

# ---------------------------------------------------------------------------- units

_NUM = r"[0-9]+(?:\.[0-9]+)?"
_DURATION = re.compile(
    rf"(?:(?P<d>{_NUM})\s*d(?:ays?)?)?\s*"
    rf"(?:(?P<h>{_NUM})\s*h(?:ours?|rs?)?)?\s*"
    rf"(?:(?P<m>{_NUM})\s*m(?:in(?:utes?|s)?)?)?\s*"
    rf"(?:(?P<s>{_NUM})\s*s(?:ec(?:onds?|s)?)?)?",
    re.IGNORECASE,
)
_DURATION_UNITS = {"d": _DAY, "h": _HOUR, "m": _MINUTE, "s": 1}
_CLOCK_PART = re.compile(r"[0-9]+")
# "GB" is taken as 1024**3 on purpose: on HPC systems (SLURM, UNICORE) G means GiB, and so
# do users who write "12GB" in a batch job.
_MEMORY = re.compile(rf"(?P<n>{_NUM})\s*(?:(?P<unit>[KMGTP])(?:i?B)?|B)?", re.IGNORECASE)
_MEMORY_UNITS = {"K": KIB, "M": MIB, "G": GIB, "T": TIB, "P": 1024**5}

_RUNTIME_FORMS = (
    'write seconds as a number (3600) or e.g. "30s", "30m", "12h", "1d", "1h30m", '
    'or SLURM\'s "MM:SS", "HH:MM:SS", "D-HH:MM:SS"'
)
_MEMORY_FORMS = (
    'write bytes as a number (1073741824) or e.g. "500M", "500MiB", "12G", "12GiB", '
    '"12GB", "1T", "2048K" (K/M/G/T are multiples of 1024)'
)


def _number(value: object, what: str, forms: str) -> Fraction | None:
    """A plain number (int or float, not bool) as a Fraction; None for anything else."""
    if isinstance(value, bool):
        raise ValueError(f"cannot read {value!r} as {what}; {forms}")
    if isinstance(value, int):
        return Fraction(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"cannot read {value!r} as {what}; {forms}")
        return Fraction(value)
    return None


def _positive(amount: Fraction, value: object, what: str) -> int:
    if amount <= 0:
        raise ValueError(f"{what} must be positive, got {value!r}")
    return math.ceil(amount)


def _clock_seconds(text: str) -> int | None:
    """SLURM's forms: MM:SS, HH:MM:SS, D-HH, D-HH:MM, D-HH:MM:SS; None for anything else."""
    days, _, clock = text.rpartition("-")
    parts = clock.split(":")
    if not days and len(parts) == 1:
        return None  # a plain number or a suffixed duration
    numbers = [int(p) for p in [days or "0", *parts] if _CLOCK_PART.fullmatch(p)]
    if len(numbers) != 1 + len(parts) or len(parts) > 3 or any(n >= 60 for n in numbers[2:]):
        return None
    # With days, or with three parts, the first part is hours; "MM:SS" otherwise.
    weights = [_MINUTE, 1] if not days and len(parts) == 2 else [_HOUR, _MINUTE, 1]
    return numbers[0] * _DAY + sum(n * w for n, w in zip(numbers[1:], weights, strict=False))


def parse_runtime(value: object) -> int:
    """Seconds from ``3600``, ``"30m"``, ``"12h"``, ``"1d"``, ``"1h30m"``, ``"HH:MM:SS"``, …

    Fractions of a second are rounded up. Raises ``ValueError`` with the valid forms.
    """
    amount = _number(value, "a run time", _RUNTIME_FORMS)
    if amount is None:
        if not isinstance(value, str):
            raise ValueError(f"cannot read {value!r} as a run time; {_RUNTIME_FORMS}")
        text = value.strip()
        if _CLOCK_PART.fullmatch(text):
            amount = Fraction(int(text))
        elif (clock := _clock_seconds(text)) is not None:
            amount = Fraction(clock)
        else:
            match = _DURATION.fullmatch(text)
            if not text or match is None or not any(match.groupdict().values()):
                raise ValueError(f"cannot read {value!r} as a run time; {_RUNTIME_FORMS}")
            amount = sum(
                (Fraction(n) * _DURATION_UNITS[unit] for unit, n in match.groupdict().items() if n),
                Fraction(0),
            )
    return _positive(amount, value, "Runtime")


def parse_memory(value: object) -> int:
    """Bytes from ``1073741824``, ``"500M"``, ``"12G"``, ``"12GiB"``, ``"12GB"``, ``"1T"``, …

    K, M, G, T (with or without ``iB``/``B``) are powers of 1024. Raises ``ValueError``.
    """
    amount = _number(value, "a memory size", _MEMORY_FORMS)
    if amount is None:
        match = _MEMORY.fullmatch(value.strip()) if isinstance(value, str) else None
        if match is None:
            raise ValueError(f"cannot read {value!r} as a memory size; {_MEMORY_FORMS}")
        unit = match["unit"]
        amount = Fraction(match["n"]) * (_MEMORY_UNITS[unit.upper()] if unit else 1)
    return _positive(amount, value, "Memory")


# ------------------------------------------------------------------------ renderers


def _require_positive(value: int, what: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{what} must be a positive integer, got {value!r}")


def unicore_runtime(seconds: int) -> str:
    """UNICORE ``Runtime``: an integer in the largest exact unit (``"12h"``, ``"90m"``)."""
    _require_positive(seconds, "seconds")
    for unit, size in (("d", _DAY), ("h", _HOUR), ("m", _MINUTE)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def unicore_memory(size: int) -> str:
    """UNICORE ``Memory``: ``"12G"``, else ``"M"``, else ``"K"`` (rounded up); never ``GiB``.

    UNICORE refuses ``"12GiB"`` and ``"12GB"``, which is what users (and the guide) write.
    """
    _require_positive(size, "size")
    for unit, factor in (("G", GIB), ("M", MIB)):
        if size % factor == 0:
            return f"{size // factor}{unit}"
    return f"{-(-size // KIB)}K"


# ---------------------------------------------------------------------- field types

_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_RESERVED_PREFIXES = ("MLFLOW_", "MANTIK_")
_SITE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


def _single_line(value: str) -> str:
    # These strings end up in batch scripts and command lines: no control characters.
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise ValueError("must be one line without control characters (newline, tab, …)")
    return value


def _no_nul(value: str) -> str:
    if "\0" in value:
        raise ValueError("must not contain a NUL character")
    return value


def _int_as_str(value: object) -> object:
    # YAML reads `Reservation: 12345` as a number; it is a name.
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


def _no_bool(value: object) -> object:
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
            f"{name!r} is not a valid variable name: use letters, digits and '_', "
            "not starting with a digit (e.g. MY_VAR)"
        )
    if name.startswith(_RESERVED_PREFIXES):
        raise ValueError(
            f"{name!r} is reserved: the platform sets MLFLOW_* and MANTIK_* variables "
            "for the job itself; choose another name"
        )
    return name


def _http_url(value: str) -> str:
    parts = urlsplit(value)
    if (
        parts.scheme not in ("https", "http")
        or not parts.hostname
        or any(c.isspace() for c in value)
    ):
        raise ValueError(
            f"{value!r} is not an http(s) URL; write e.g. "
            '"https://zam2125.zam.kfa-juelich.de:9112/JUWELS/rest/core"'
        )
    return value


def _local_image(value: str) -> str:
    if "://" in value:
        raise ValueError(
            f"{value!r} is not a file path: give the path of a local image file (relative to "
            "the MLproject directory, or absolute); for an image already on the site use "
            "RemoteImage"
        )
    return value


def _absolute(value: str) -> str:
    if not value.startswith("/"):
        raise ValueError(f"{value!r} must be an absolute path on the site, e.g. /p/images/x.sif")
    return value


def _module_name(value: str) -> str:
    if any(c.isspace() for c in value):
        raise ValueError(f"{value!r} contains spaces: give one module per list item")
    return value


def _site_name(value: str) -> str:
    if not _SITE_NAME.fullmatch(value):
        raise ValueError(f"{value!r} is not a site name (letters, digits, '.', '_', '-')")
    return value


_Line = Annotated[str, Field(min_length=1), AfterValidator(_single_line)]
_Name = Annotated[
    str, Field(min_length=1), AfterValidator(_single_line), BeforeValidator(_int_as_str)
]
_Count = Annotated[int, Field(gt=0), BeforeValidator(_no_bool)]
_Runtime = Annotated[
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
_Memory = Annotated[
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
_EnvName = Annotated[
    str,
    AfterValidator(_env_name),
    WithJsonSchema({"type": "string", "pattern": f"^{_ENV_NAME.pattern}$"}),
]
_EnvValue = Annotated[
    str,
    BeforeValidator(_env_value),
    AfterValidator(_no_nul),
    WithJsonSchema({"type": ["string", "number", "boolean"]}),
]


# --------------------------------------------------------------------------- models


class _Model(BaseModel):
    model_config = ConfigDict(
        frozen=True,
        extra="forbid",
        populate_by_name=True,
        field_title_generator=lambda name, field: field.alias or name,
    )


class Resources(_Model):
    """What the batch job asks for. ``runtime`` is in seconds, ``memory`` in bytes (per node)."""

    runtime: _Runtime | None = Field(None, alias="Runtime")
    queue: _Name | None = Field(None, alias="Queue", description="Partition / queue.")
    nodes: _Count | None = Field(None, alias="Nodes")
    cpus: _Count | None = Field(None, alias="CPUs", description="Total CPUs (tasks).")
    cpus_per_node: _Count | None = Field(None, alias="CPUsPerNode")
    gpus_per_node: Annotated[int, Field(ge=0), BeforeValidator(_no_bool)] | None = Field(
        None, alias="GPUsPerNode"
    )
    memory: _Memory | None = Field(None, alias="Memory")
    reservation: _Name | None = Field(None, alias="Reservation")
    node_constraints: _Line | None = Field(None, alias="NodeConstraints")
    qos: _Name | None = Field(None, alias="QoS")


class BackendConfig(_Model):
    """A backend configuration: the user guide's keys plus mantik's extensions.

    Example::

        {"SingularityImage": "image.sif", "Resources": {"Runtime": "12h", "Memory": "12GiB"}}
    """

    singularity_image: Annotated[_Line, AfterValidator(_local_image)] | None = Field(
        None,
        alias="SingularityImage",
        description="Local image file, relative to the MLproject directory or absolute; "
        "uploaded with the run.",
    )
    unicore_api_url: Annotated[_Line, AfterValidator(_http_url)] | None = Field(
        None, alias="UnicoreApiUrl", description="UNICORE/X REST URL of the site."
    )
    environment: dict[_EnvName, _EnvValue] = Field(
        default_factory=dict,
        alias="Environment",
        description="Environment variables of the job (MLFLOW_* and MANTIK_* are reserved).",
    )
    resources: Resources = Field(default_factory=Resources, alias="Resources")
    compute_site: Annotated[_Line, AfterValidator(_site_name)] | None = Field(
        None,
        alias="ComputeSite",
        description='Name of a site configured by the platform admin, e.g. "slurm".',
    )
    remote_image: Annotated[_Line, AfterValidator(_absolute)] | None = Field(
        None,
        alias="RemoteImage",
        description="Absolute path of an image that already exists on the site.",
    )
    apptainer_options: list[_Line] = Field(
        default_factory=list,
        alias="ApptainerOptions",
        description='Extra arguments of `apptainer run`, e.g. ["--nv", "-B", "/p:/p"].',
    )
    venv: _Line | None = Field(
        None, alias="Venv", description="Python venv on the site to run in, instead of an image."
    )
    modules: list[Annotated[_Line, AfterValidator(_module_name)]] = Field(
        default_factory=list, alias="Modules", description="Environment modules to load."
    )
    pre_run_commands: list[Annotated[str, Field(min_length=1), AfterValidator(_no_nul)]] = Field(
        default_factory=list, alias="PreRunCommands", description="Shell lines run before."
    )
    post_run_commands: list[Annotated[str, Field(min_length=1), AfterValidator(_no_nul)]] = Field(
        default_factory=list, alias="PostRunCommands", description="Shell lines run after."
    )
    exclude: list[_Line] = Field(
        default_factory=list,
        alias="Exclude",
        description="Glob patterns of project files not to upload.",
    )
    tracking: Literal["online", "offline", "auto"] = Field(
        "auto",
        alias="Tracking",
        description="online: log to the platform from the node; offline: log to files and "
        "upload after the run; auto: online when the node can reach the platform.",
    )

    @model_validator(mode="after")
    def _exclusive(self) -> BackendConfig:
        if self.singularity_image and self.remote_image:
            raise ValueError(
                "SingularityImage and RemoteImage exclude each other: use SingularityImage "
                "for a local image to upload, RemoteImage for one already on the site"
            )
        image = "SingularityImage" if self.singularity_image else "RemoteImage"
        if self.venv and (self.singularity_image or self.remote_image):
            raise ValueError(
                f"Venv and {image} exclude each other: a run uses either a venv or an image"
            )
        if self.venv and self.apptainer_options:
            raise ValueError("ApptainerOptions apply to images, not to a Venv: remove one of them")
        return self

    def to_wire(self) -> dict[str, Any]:
        """The JSON-ready dict with the user-facing keys that the client sends."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


# --------------------------------------------------------------------------- errors


def _key_path(loc: tuple[int | str, ...]) -> str:
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        elif part != "[key]":
            text += f".{part}" if text else str(part)
    return text


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
    try:
        text = json.dumps(value)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _kind(value: object) -> str:
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
        return f"must be a string, got {_kind(value)}"
    if kind in ("int_type", "int_parsing", "int_from_float"):
        return f"must be a whole number, got {_kind(value)}"
    if kind == "greater_than" and ctx.get("gt") == 0:
        return f"must be a positive whole number, got {_shown(value)}"
    if kind == "greater_than":
        return f"must be greater than {ctx['gt']}, got {_shown(value)}"
    if kind == "greater_than_equal":
        return f"must be at least {ctx['ge']}, got {_shown(value)}"
    if kind in ("string_too_short", "too_short"):
        return "must not be empty (leave the key out instead)"
    if kind in ("list_type", "tuple_type"):
        return f'must be a list of strings, e.g. ["a", "b"], got {_kind(value)}'
    if kind in ("dict_type", "model_type", "model_attributes_type"):
        return f"must be a mapping (a JSON object) of keys to values, got {_kind(value)}"
    if kind == "literal_error":
        return f"must be one of {ctx['expected']}, got {_shown(value)}"
    if kind == "invalid_key":
        return "keys must be strings"
    return str(error["msg"])


def _describe(exc: ValidationError, source: str) -> str:
    items: list[tuple[str, str | None, str]] = []  # (headline, key, detail)
    for error in exc.errors(include_url=False):
        loc = tuple(error["loc"])
        if error["type"] == "extra_forbidden":
            items.append(("Unknown key", _key_path(loc), _unknown_key(loc)))
        elif not loc:
            items.append(("Conflicting keys", None, _detail(error)))
        elif loc[-1] == "[key]":
            items.append(("Bad variable name in", _key_path(loc[:-2]), _detail(error)))
        else:
            items.append(("Bad value for", _key_path(loc), _detail(error)))
    if len(items) == 1:
        headline, key, detail = items[0]
        named = f"{headline} '{key}'" if key is not None else headline
        return f"{named} in {source}: {detail}"
    parts = [
        f"{headline.lower()} '{key}': {detail}" if key is not None else detail
        for headline, key, detail in items
    ]
    return f"{len(items)} problems in {source}: " + "; ".join(parts)


# -------------------------------------------------------------------------- loading


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


def _from_yaml(text: str, source: str) -> object:
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigurationError(f"{source} is not valid YAML{where}: {problem}") from exc


def validate_backend_config(data: object, *, source: str = "the backend config") -> BackendConfig:
    """Validate parsed data; every problem goes into one :class:`ConfigurationError`.

    ``source`` names the file (or form field) in the message.
    """
    if not isinstance(data, dict):
        raise ConfigurationError(
            f"{source} must contain a mapping (a JSON object) of keys such as "
            f"SingularityImage and Resources at the top level, got {_kind(data)}"
        )
    try:
        return BackendConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigurationError(_describe(exc, source)) from None


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


def load_backend_config(path: Path) -> BackendConfig:
    """Load ``path`` (JSON, or YAML for ``.yaml``/``.yml``) and validate it.

    Raises :class:`ConfigurationError` naming the file, each bad key and the fix.
    """
    path = Path(path)
    source = str(path)
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
