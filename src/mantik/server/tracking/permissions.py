"""Experiment permissions, resolved exactly as MLflow's auth app resolves them."""

from __future__ import annotations

from typing import Literal


def can_access(username: str, experiment_id: str, action: Literal["read", "update"]) -> bool:
    """Whether ``username`` may read (READ+) or update (EDIT+) ``experiment_id``."""
    from mlflow.server import auth

    if auth.store.get_user(username).is_admin:
        return True
    # The same resolution MLflow uses for its own endpoints (pinned MLflow version).
    with auth.app.test_request_context():  # type: ignore[attr-defined]
        permission = auth._resolve_user_permission_for_resource(
            username, "experiment", experiment_id
        )
    return bool(permission.can_read if action == "read" else permission.can_update)
