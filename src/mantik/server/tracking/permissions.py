"""Experiment permissions, resolved exactly as MLflow's auth app resolves them."""

from __future__ import annotations

from typing import Literal

from mantik import _mlflow_internals as mlflow_internals


def can_access(username: str, experiment_id: str, action: Literal["read", "update"]) -> bool:
    """Whether ``username`` may read (READ+) or update (EDIT+) ``experiment_id``."""
    if mlflow_internals.permission_store().get_user(username).is_admin:
        return True
    permission = mlflow_internals.resolve_permission(
        username, mlflow_internals.EXPERIMENT, experiment_id
    )
    return bool(permission.can_read if action == "read" else permission.can_update)
