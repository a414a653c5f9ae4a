"""What a job token may do: write to its own run (and child runs and models in its
experiment), read its experiment — nothing else, whatever its user may do.

The check judges exactly the parameters MLflow's handler will use (``request_params``):
a GET with a query reads the query, anything else reads the body. A request that carries
both is refused, as is one that names an id twice with different values (JSON aliases such
as ``runId`` included) — there is no honest client that needs either.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from mantik.server.identity.tokens import Principal
from mantik.server.tracking.request_rules import Unread

_API = re.compile(r"^/(?:api|ajax-api)/[23]\.0/mlflow/(.+)$")
_ARTIFACTS = re.compile(r"^/(?:api|ajax-api)/2\.0/mlflow-artifacts/artifacts/(.+)$")
_LOGGED_MODEL = re.compile(
    r"^logged-models/([^/]+)(?:/(?:params|tags(?:/[^/]+)?|artifacts/directories))?$"
)

_RUN_ENDPOINTS = frozenset(
    {
        "runs/get",
        "runs/update",
        "runs/log-metric",
        "runs/log-batch",
        "runs/log-parameter",
        "runs/set-tag",
        "runs/delete-tag",
        "runs/log-model",
        "runs/log-inputs",
        "runs/outputs",
        "metrics/get-history",
        "metrics/get-history-bulk-interval",
        "artifacts/list",
    }
)
_EXPERIMENT_ENDPOINTS = frozenset({"experiments/get", "runs/search", "logged-models/search"})

# Every spelling under which MLflow's parser accepts an id (proto name and JSON name).
RUN_FIELDS = ("run_id", "run_uuid", "runId", "runUuid", "run_ids", "runIds")
EXPERIMENT_FIELDS = ("experiment_id", "experimentId", "experiment_ids", "experimentIds")

ModelExperiment = Callable[[str], "str | None"]


class Ambiguous(Exception):
    """The request names its target in two places; MLflow would read only one."""


def request_params(method: str, args: Any, body: Any) -> dict[str, list[Any]]:
    """The parameters MLflow's handler reads, every value of each as a list.

    ``args`` is the query (a MultiDict), ``body`` the JSON body as MLflow parses it (any type).
    """
    if isinstance(body, Unread):
        raise Ambiguous("a body too large to judge")
    has_body = body not in (None, {}, "", [])
    if len(args) and has_body:
        raise Ambiguous("both a query and a body")
    if method == "GET" and len(args):
        return {name: args.getlist(name) for name in args}
    if not has_body:
        return {}
    if not isinstance(body, dict):
        raise Ambiguous("a body that is not a JSON object")
    return {k: v if isinstance(v, list) else [v] for k, v in body.items()}


def _ids(params: Mapping[str, list[Any]], fields: tuple[str, ...]) -> list[str]:
    return [str(value) for name in fields for value in params.get(name, [])]


def _only(ids: list[str], own: str) -> bool:
    return bool(ids) and all(i == own for i in ids)


def _artifact_allowed(principal: Principal, rest: str) -> bool:
    parts = rest.split("/")
    if any(p in ("", ".", "..") for p in parts):
        return False
    return (
        len(parts) >= 2
        and parts[0] == principal.experiment_id
        and parts[1] in (principal.run_id, "models")
    )


def allows(
    principal: Principal,
    method: str,
    path: str,
    args: Any,
    body: Any,
    model_experiment: ModelExperiment,
) -> bool:
    """``model_experiment(model_id)``: the experiment of a logged model, None if unknown."""
    run_id, experiment_id = principal.run_id, principal.experiment_id
    if run_id is None or experiment_id is None:
        return False
    artifact = _ARTIFACTS.match(path)
    if artifact:
        return _artifact_allowed(principal, artifact.group(1))
    api = _API.match(path)
    if not api:
        return False
    try:
        params = request_params(method, args, body)
    except Ambiguous:
        return False
    endpoint = api.group(1)
    if endpoint in _RUN_ENDPOINTS:
        return _only(_ids(params, RUN_FIELDS), run_id)
    if endpoint in _EXPERIMENT_ENDPOINTS:
        return _only(_ids(params, EXPERIMENT_FIELDS), experiment_id)
    if endpoint == "runs/create":  # child runs of the job's run only
        tags = {t.get("key"): t.get("value") for t in params.get("tags", []) if isinstance(t, dict)}
        return (
            _only(_ids(params, EXPERIMENT_FIELDS), experiment_id)
            and tags.get("mlflow.parentRunId") == run_id
        )
    if endpoint == "logged-models":  # create, in the job's experiment
        source_runs = _ids(params, ("source_run_id", "sourceRunId"))
        return _only(_ids(params, EXPERIMENT_FIELDS), experiment_id) and all(
            r == run_id for r in source_runs
        )
    model = _LOGGED_MODEL.match(endpoint)
    if model:
        return model_experiment(model.group(1)) == experiment_id
    return False
