"""Sharing prompts through MLflow's own per-user grant API.

MLflow 3.17.2 keeps a prompt's grants apart from registered models' (resource type
``prompt``: a prompt is a registered model tagged ``mlflow.prompt.is_prompt``, and reading or
using one is checked against ``prompt`` grants only). Its creator gets MANAGE there, yet
``/api/3.0/mlflow/users/permissions/{grant,revoke,get}`` refuse ``resource_type: prompt``
for everyone but administrators, only because the table those routes resolve resource types
with has no entry for it. :func:`install` adds the entry, and makes a prompt grant name an
existing prompt: the MANAGE check stays MLflow's, in the ``prompt`` namespace.
Written against the pinned MLflow version (private parts of ``mlflow.server.auth``).
"""

from __future__ import annotations

import importlib
from typing import Any


def install() -> None:
    auth: Any = importlib.import_module("mlflow.server.auth")  # private API, pinned MLflow
    table = auth._RESOURCE_WORKSPACE_FETCHER
    # A prompt lives in the registry, so its workspace is read as a registered model's.
    table.setdefault(auth.RESOURCE_TYPE_PROMPT, table[auth.RESOURCE_TYPE_REGISTERED_MODEL])
    original = auth.validate_can_manage_resource

    def validate_can_manage_resource() -> bool:
        if auth._get_request_param("resource_type") == auth.RESOURCE_TYPE_PROMPT:
            name = auth._get_request_param("resource_id")
            # "*" stays MLflow's (administrators only); a name must be a prompt, not a
            # registered model that a stale ``prompt`` grant still names.
            if name != "*" and not _is_prompt(auth, name):
                return False
        return bool(original())

    for route, validator in list(auth.BEFORE_REQUEST_VALIDATORS.items()):
        if validator is original:
            auth.BEFORE_REQUEST_VALIDATORS[route] = validate_can_manage_resource


def _is_prompt(auth: Any, name: str) -> bool:
    try:
        model = auth._get_model_registry_store().get_registered_model(name)
    except auth.MlflowException:
        return False
    return bool(model._is_prompt())
