"""Experiment sharing through the platform's permission API."""

from __future__ import annotations

import httpx

from mantik._exceptions import PlatformError
from mantik.client import _env, _http, _tokens


def share_experiment(experiment: str, user: str, permission: str) -> str:
    """Grant ``user`` ``permission`` on ``experiment`` (id or name); returns the id."""
    values = _env.require(_env.USERNAME, _env.PASSWORD, _env.TRACKING_URI)
    url = _env.platform_url(values[_env.TRACKING_URI])
    token = _tokens.obtain(url, values[_env.USERNAME], values[_env.PASSWORD]).access_token
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=url, timeout=_http.TIMEOUT, headers=headers) as client:
        experiment_id = experiment
        if not experiment.isdigit():
            response = _http.request(
                client,
                "GET",
                "/api/2.0/mlflow/experiments/get-by-name",
                params={"experiment_name": experiment},
            )
            if response.status_code == 404:
                raise PlatformError(f"No experiment named {experiment!r} that you can see.")
            _http.raise_for_status(response)
            experiment_id = response.json()["experiment"]["experiment_id"]
        response = _http.request(
            client,
            "POST",
            "/api/3.0/mlflow/users/permissions/grant",
            json={
                "username": user,
                "resource_type": "experiment",
                "resource_id": experiment_id,
                "permission": permission,
            },
        )
        _http.raise_for_status(response)
    return experiment_id
