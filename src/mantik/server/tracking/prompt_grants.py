"""Sharing prompts through MLflow's own per-user grant API.

MLflow 3.17.2 keeps a prompt's grants apart from registered models' (resource type
``prompt``: a prompt is a registered model tagged ``mlflow.prompt.is_prompt``, and reading or
using one is checked against ``prompt`` grants only). Its creator gets MANAGE there, yet
``/api/3.0/mlflow/users/permissions/{grant,revoke,get}`` refuse ``resource_type: prompt``
for everyone but administrators, only because the table those routes resolve resource types
with has no entry for it. :func:`install` adds the entry, and makes a prompt grant name an
existing prompt: the MANAGE check stays MLflow's, in the ``prompt`` namespace.
"""

from __future__ import annotations

from collections.abc import Callable

from mantik import _mlflow_internals as mlflow_internals


def install() -> None:
    # A prompt lives in the registry, so its workspace is read as a registered model's.
    mlflow_internals.share_workspace_lookup(
        mlflow_internals.PROMPT, like=mlflow_internals.REGISTERED_MODEL
    )
    mlflow_internals.replace_validator("validate_can_manage_resource", _prompt_names_a_prompt)


def _prompt_names_a_prompt(original: Callable[[], bool]) -> Callable[[], bool]:
    def validate_can_manage_resource() -> bool:
        if mlflow_internals.request_param("resource_type") == mlflow_internals.PROMPT:
            name = mlflow_internals.request_param("resource_id")
            # "*" stays MLflow's (administrators only); a name must be a prompt, not a
            # registered model that a stale ``prompt`` grant still names.
            if name != "*" and not mlflow_internals.is_prompt(name):
                return False
        return bool(original())

    return validate_can_manage_resource
