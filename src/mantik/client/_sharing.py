"""Sharing experiments, registered models and prompts with other users.

All three go through MLflow's per-user grant API; the platform makes it take prompts too
(``mantik.server.tracking.prompt_grants``). Whoever shares needs MANAGE on the thing shared.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import httpx

from mantik._exceptions import ConfigurationError, PlatformError
from mantik.client import _env, _http, _tokens

Kind = Literal["experiment", "registered_model", "prompt"]

GRANTS = "/api/3.0/mlflow/users/permissions"
IS_PROMPT = "mlflow.prompt.is_prompt"  # the tag that makes a registered model a prompt
_NOUNS: dict[Kind, str] = {
    "experiment": "experiment",
    "registered_model": "registered model",
    "prompt": "prompt",
}
_COMMANDS: dict[Kind, str] = {
    "experiment": "mantik experiments share",
    "registered_model": "mantik models share",
    "prompt": "mantik prompts share",
}


@dataclass(frozen=True)
class Share:
    """What :func:`share` did: ``user`` now has ``permission`` on ``resource_id``."""

    kind: Kind
    resource_id: str  # an experiment's id; a registered model's or prompt's name
    user: str
    permission: str
    replaced: bool  # ``user`` had another permission on it before

    @property
    def what(self) -> str:
        return _what(self.kind, self.resource_id)


def share(kind: Kind, name: str, user: str, permission: str) -> Share:
    """Grant ``user`` ``permission`` (READ, USE, EDIT or MANAGE) on something you manage.

    ``name`` is an experiment's id or name, or a registered model's or prompt's name.
    Sharing again with another permission replaces the earlier one.

    Example: ``share("prompt", "summarise", "colleague", "READ")``.
    """
    values = _env.require(_env.USERNAME, _env.PASSWORD, _env.TRACKING_URI)
    if user == values[_env.USERNAME]:
        # Replacing your own grant first revokes it: you could lock yourself out.
        raise ConfigurationError(
            f"You cannot share {_what(kind, name)} with yourself: name another user."
        )
    url = _env.platform_url(values[_env.TRACKING_URI])
    token = _tokens.obtain(url, values[_env.USERNAME], values[_env.PASSWORD]).access_token
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=url, timeout=_http.TIMEOUT, headers=headers) as client:
        if kind == "experiment":
            resource_id = _experiment_id(client, name)
        else:
            _check_registry_kind(client, kind, name)
            resource_id = name
        replaced = _grant(client, kind, resource_id, user, permission)
    return Share(kind, resource_id, user, permission, replaced)


def share_experiment(experiment: str, user: str, permission: str) -> str:
    """Grant ``user`` ``permission`` on ``experiment`` (id or name); returns the id."""
    return share("experiment", experiment, user, permission).resource_id


def _what(kind: Kind, resource_id: str) -> str:
    shown = resource_id if kind == "experiment" else repr(resource_id)
    return f"{_NOUNS[kind]} {shown}"


def _experiment_id(client: httpx.Client, experiment: str) -> str:
    if experiment.isdigit():
        path, params = "/api/2.0/mlflow/experiments/get", {"experiment_id": experiment}
    else:
        path, params = "/api/2.0/mlflow/experiments/get-by-name", {"experiment_name": experiment}
    response = _http.request(client, "GET", path, params=params)
    _raise_unless_visible(response, f"No experiment {experiment!r} that you can see.")
    return str(response.json()["experiment"]["experiment_id"])


def _check_registry_kind(client: httpx.Client, kind: Kind, name: str) -> None:
    """A prompt is a registered model with a tag: say so when the other command is meant."""
    response = _http.request(
        client, "GET", "/api/2.0/mlflow/registered-models/get", params={"name": name}
    )
    _raise_unless_visible(response, f"No {_NOUNS[kind]} named {name!r} that you can see.")
    tags = response.json()["registered_model"].get("tags", [])
    is_prompt = any(t.get("key") == IS_PROMPT and t.get("value") == "true" for t in tags)
    actual: Kind = "prompt" if is_prompt else "registered_model"
    if actual != kind:
        raise ConfigurationError(
            f"{name!r} is a {_NOUNS[actual]}, not a {_NOUNS[kind]}: "
            f"share it with `{_COMMANDS[actual]}`."
        )


def _raise_unless_visible(response: httpx.Response, message: str) -> None:
    # MLflow answers 403 for what does not exist as for what you may not see.
    if response.status_code in (403, 404):
        raise PlatformError(message, status_code=response.status_code)
    _http.raise_for_status(response)


def _grant(client: httpx.Client, kind: Kind, resource_id: str, user: str, permission: str) -> bool:
    """Grant, or replace an earlier grant; True if one was replaced."""
    target = {"username": user, "resource_type": kind, "resource_id": resource_id}
    grant = {**target, "permission": permission}
    response = _http.request(client, "POST", f"{GRANTS}/grant", json=grant)
    replaced = _error_code(response) == "RESOURCE_ALREADY_EXISTS"
    if replaced:
        # MLflow's grant never overwrites, and only administrators may edit a grant (the role
        # API), so the earlier grant goes first. 404: it went meanwhile; nothing to revoke.
        revoked = _http.request(client, "POST", f"{GRANTS}/revoke", json=target)
        if revoked.status_code != 404:
            _raise_for_grant(revoked, kind, resource_id, user)
        response = _http.request(client, "POST", f"{GRANTS}/grant", json=grant)
    _raise_for_grant(response, kind, resource_id, user)
    return replaced


def _raise_for_grant(response: httpx.Response, kind: Kind, resource_id: str, user: str) -> None:
    if response.status_code == 404:  # the resource was found before: the user is unknown
        raise PlatformError(f"No user named {user!r} on this platform.", status_code=404)
    if response.status_code == 403:
        raise PlatformError(
            f"You may not share {_what(kind, resource_id)}: that takes MANAGE on it "
            "(ask whoever manages it).",
            status_code=403,
        )
    _http.raise_for_status(response)


def _error_code(response: httpx.Response) -> str | None:
    try:
        body = response.json()
    except ValueError:
        return None
    code = body.get("error_code") if isinstance(body, dict) else None
    return code if isinstance(code, str) else None
