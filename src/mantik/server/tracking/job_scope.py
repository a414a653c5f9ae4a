"""What a job token may do: write to its own run (and child runs and models in its
experiment), read its experiment — nothing else, whatever its user may do."""

from __future__ import annotations

import re
from typing import Any

from mantik.server.identity.tokens import Principal

_API = re.compile(r"^/(?:api|ajax-api)/[23]\.0/mlflow/(.+)$")
_ARTIFACTS = re.compile(r"^/(?:api|ajax-api)/2\.0/mlflow-artifacts/artifacts/(.+)$")

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
_EXPERIMENT_ENDPOINTS = frozenset({"experiments/get", "runs/search"})


def _value(args: Any, body: dict[str, Any], *names: str) -> Any:
    for name in names:
        if name in body:
            return body[name]
        if args.get(name) is not None:
            return args.get(name)
    return None


def allows(principal: Principal, path: str, args: Any, body: dict[str, Any]) -> bool:
    """``args``: the query (a MultiDict), ``body``: the JSON body (or {})."""
    run_id, experiment_id = principal.run_id, principal.experiment_id
    if run_id is None or experiment_id is None:
        return False
    artifact = _ARTIFACTS.match(path)
    if artifact:
        parts = artifact.group(1).split("/")
        return len(parts) >= 2 and parts[0] == experiment_id and parts[1] in (run_id, "models")
    api = _API.match(path)
    if not api:
        return False
    endpoint = api.group(1)
    if endpoint in _RUN_ENDPOINTS:
        return bool(_value(args, body, "run_id", "run_uuid") == run_id)
    if endpoint in _EXPERIMENT_ENDPOINTS:
        wanted = _value(args, body, "experiment_id", "experiment_ids")
        wanted = wanted if isinstance(wanted, list) else [wanted]
        if endpoint == "runs/search" and isinstance(args.getlist("experiment_ids"), list):
            wanted = args.getlist("experiment_ids") or wanted
        return bool(wanted) and all(str(w) == experiment_id for w in wanted)
    if endpoint == "runs/create":  # child runs of the job's run only
        tags = {t.get("key"): t.get("value") for t in body.get("tags", []) if isinstance(t, dict)}
        return (
            str(body.get("experiment_id")) == experiment_id
            and tags.get("mlflow.parentRunId") == run_id
        )
    if endpoint.startswith("logged-models"):
        created_in = body.get("experiment_id")
        return created_in is None or str(created_in) == experiment_id
    return False
