"""What a request may claim as its own: reserved names, storage, a model version's source.

Judged by the gate after :mod:`request_rules`, on the body MLflow's handler will parse, for
every user (administrators included). MLflow 3.17.2 lets anyone

- create or rename to ``<user>-default``, the experiment ``mantik.init_tracking()`` picks
  for ``<user>`` — a squatter then blocks that user or, by sharing it, collects their runs;
- choose an experiment's ``artifact_location`` (``file:///any/dir``): the server then
  writes that experiment's uploads there;
- register a model version whose ``source`` is a storage URI tied to no run
  (``s3://<platform bucket>/<another user's run>``): downloading it then reads another
  user's files with the platform's credentials.
"""

from __future__ import annotations

import re
import urllib.parse
from dataclasses import dataclass
from typing import Any, Protocol

from mantik import _mlflow_internals as mlflow_internals
from mantik._naming import default_experiment_owner
from mantik.server.tracking import permissions
from mantik.server.tracking.request_rules import Refusal, body_fields

_MLFLOW = r"^/(?:api|ajax-api)/2\.0/mlflow/"
_CREATE_EXPERIMENT = re.compile(_MLFLOW + r"experiments/create$")
_RENAME_EXPERIMENT = re.compile(_MLFLOW + r"experiments/update$")
_CREATE_VERSION = re.compile(_MLFLOW + r"model-versions/create$")
# The sources MLflow's own senders give a prompt version (mlflow.prompt.constants); MLflow
# accepts them for prompts only, and a prompt version has no artifacts.
_PROMPT_PLACEHOLDERS = frozenset({"dummy-source", "prompt-template"})
_SOURCE_FORMS = (
    "'runs:/<run_id>/<path>', 'models:/<model_id>', 'models:/<registered model>/<version>', "
    "or a URI under the artifact location of the run_id or model_id sent with it"
)


@dataclass(frozen=True)
class Holder:
    """A run or logged model: its experiment, and where its artifacts lie."""

    experiment_id: str
    artifact_root: str


class Lookups(Protocol):
    def run(self, run_id: str) -> Holder | None: ...

    def logged_model(self, model_id: str) -> Holder | None: ...

    def can_read(self, username: str, experiment_id: str) -> bool: ...


class MlflowLookups:
    """The tracking store, and MLflow's own permission resolution."""

    def run(self, run_id: str) -> Holder | None:
        from mlflow.exceptions import MlflowException

        store: Any = mlflow_internals.tracking_store()
        try:
            info = store.get_run(run_id).info
        except MlflowException:
            return None
        return Holder(str(info.experiment_id), str(info.artifact_uri))

    def logged_model(self, model_id: str) -> Holder | None:
        from mlflow.exceptions import MlflowException

        try:
            model = mlflow_internals.tracking_store().get_logged_model(model_id)
        except MlflowException:
            return None
        return Holder(str(model.experiment_id), str(model.artifact_location))

    def can_read(self, username: str, experiment_id: str) -> bool:
        return permissions.can_access(username, experiment_id, "read")


MLFLOW_LOOKUPS = MlflowLookups()


def check(request: Any, body: Any, username: str, lookups: Lookups = MLFLOW_LOOKUPS) -> None:
    """Raise :class:`Refusal` for a claim on what is not the caller's."""
    path: str = request.path
    if _CREATE_EXPERIMENT.match(path):
        fields = body_fields(body)
        if _one(fields, "artifact_location", "artifactLocation"):
            raise Refusal(
                400,
                "INVALID_PARAMETER_VALUE",
                "The platform chooses where an experiment's artifacts are stored (its proxied "
                "'mlflow-artifacts:' store): create the experiment without 'artifact_location'.",
            )
        _reserved_name(_one(fields, "name"), username)
    elif _RENAME_EXPERIMENT.match(path):
        _reserved_name(_one(body_fields(body), "new_name", "newName"), username)
    elif _CREATE_VERSION.match(path):
        _model_version_source(body_fields(body), username, lookups)


def _one(fields: dict[str, Any], *spellings: str) -> str | None:
    """A field MLflow reads under its name or JSON alias (``newName``), given once."""
    given = [name for name in spellings if name in fields]
    if len(given) > 1:
        raise Refusal(
            400, "INVALID_PARAMETER_VALUE", f"Send '{spellings[0]}' once, not as {given}."
        )
    if not given or fields[given[0]] is None:
        return None
    value = fields[given[0]]
    if not isinstance(value, str):
        raise Refusal(400, "INVALID_PARAMETER_VALUE", f"'{given[0]}' must be a string.")
    return value


def _reserved_name(name: str | None, username: str) -> None:
    wanted = (name or "").strip()
    owner = default_experiment_owner(wanted)
    if owner is not None and owner != username:
        raise Refusal(
            403,
            "PERMISSION_DENIED",
            f"The experiment name '{wanted}' is reserved: it is the personal default "
            f"experiment of user '{owner}'. Choose another name.",
        )


def _model_version_source(fields: dict[str, Any], username: str, lookups: Lookups) -> None:
    source = _one(fields, "source") or ""
    run_id = _one(fields, "run_id", "runId") or ""
    model_id = _one(fields, "model_id", "modelId") or ""
    if source in _PROMPT_PLACEHOLDERS:
        return
    # Parsed as MLflow's handler parses it (urlparse: ';params' are not part of the path).
    parsed = urllib.parse.urlparse(source, allow_fragments=False)
    scheme = parsed.scheme.lower()
    if scheme in ("runs", "models") and parsed.netloc:
        raise Refusal(
            400, "INVALID_PARAMETER_VALUE", f"A source names no other registry: {source!r}."
        )
    if scheme == "models" and _registered_version(parsed.path, source):
        # The copy of a registered version: MLflow requires READ on that registered model
        # and that run_id and model_id, if sent, are the copied version's own.
        return
    holders: dict[str, Holder] = {}
    if run_id:
        holders["run"] = _readable(username, lookups, "run", run_id)
    if model_id:
        holders["logged model"] = _readable(username, lookups, "logged model", model_id)
    if scheme == "runs":
        _readable(username, lookups, "run", _runs_uri_run_id(parsed.path, source))
        return
    if scheme == "models":
        _readable(username, lookups, "logged model", parsed.path[1:])
        return
    # A storage URI: MLflow ties it to the model_id if one is sent, else to the run_id.
    anchor = holders.get("logged model") or holders.get("run")
    if anchor is None or not _lies_under(source, anchor.artifact_root):
        raise Refusal(
            400,
            "INVALID_PARAMETER_VALUE",
            f"A model version's source must be {_SOURCE_FORMS}; {source!r} is none of these.",
        )


def _readable(username: str, lookups: Lookups, kind: str, ident: str) -> Holder:
    holder = lookups.run(ident) if kind == "run" else lookups.logged_model(ident)
    # An unknown id is refused like an unreadable one: no oracle for other users' ids.
    if holder is None or not lookups.can_read(username, holder.experiment_id):
        raise Refusal(
            403, "PERMISSION_DENIED", f"The model version names no {kind} you may read: {ident!r}."
        )
    return holder


def _runs_uri_run_id(path: str, source: str) -> str:
    run_id = path[1:].split("/", 1)[0] if path.startswith("/") else ""
    if not run_id:
        raise Refusal(
            400, "INVALID_PARAMETER_VALUE", f"Not a 'runs:/<run_id>/<path>' URI: {source!r}."
        )
    return run_id


def _registered_version(path: str, source: str) -> bool:
    """Whether a ``models:`` path names a registered model's version (``name/1``,
    ``name/latest``, ``name@alias``) rather than a logged model (``<model_id>``)."""
    parts = path[1:].split("/") if path.startswith("/") else []
    if not parts or len(parts) > 2 or not parts[0].strip() or not parts[-1].strip():
        raise Refusal(400, "INVALID_PARAMETER_VALUE", f"Not a 'models:/' URI: {source!r}.")
    return len(parts) == 2 or "@" in path


def _uri_parts(uri: str) -> tuple[str, str, tuple[str, ...]] | None:
    """Scheme, authority and decoded path segments; None for what cannot be compared
    safely (dot segments, encoded separators, a query, parameters or a fragment)."""
    parsed = urllib.parse.urlparse(uri, allow_fragments=False)
    if parsed.query or parsed.params or "#" in parsed.path:
        return None
    parts = []
    for raw in parsed.path.split("/"):
        part = raw
        while (decoded := urllib.parse.unquote(part)) != part:
            part = decoded
        if any(c in part for c in "/\\\x00") or part in (".", ".."):
            return None
        if part:
            parts.append(part)
    return parsed.scheme.lower(), parsed.netloc.lower(), tuple(parts)


def _lies_under(source: str, root: str) -> bool:
    inside, outside = _uri_parts(source), _uri_parts(root)
    if inside is None or outside is None or not outside[2]:
        return False
    return inside[:2] == outside[:2] and inside[2][: len(outside[2])] == outside[2]
