"""MLflow request auth provider ``mantik`` (selected by ``MLFLOW_TRACKING_AUTH=mantik``).

MLflow reads ``MLFLOW_TRACKING_TOKEN`` once per request; a training run that outlives the
token's lifetime would start failing with 401. This provider attaches a token that it renews
shortly before expiry (and once more on a 401), using the refresh token from the cache and,
if that is dead, ``MANTIK_PASSWORD``.
"""

from __future__ import annotations

import os
import threading
from typing import Any

import requests
from mlflow.tracking.request_auth.abstract_request_auth_provider import RequestAuthProvider

from mantik._exceptions import MantikError
from mantik.client import _env, _tokens


class _RenewingBearer(requests.auth.AuthBase):
    _lock = threading.Lock()
    # Per process, keyed by (platform URL, user): a process may switch users.
    _current: dict[tuple[str, str], _tokens.Tokens] = {}

    def _token(self, *, force: bool = False) -> str | None:
        env_token = os.environ.get("MLFLOW_TRACKING_TOKEN")
        username = os.environ.get(_env.USERNAME)
        password = os.environ.get(_env.PASSWORD)
        uri = os.environ.get(_env.TRACKING_URI)
        if not (username and password and uri):
            return env_token  # e.g. a job token: nothing to renew it with
        try:
            key = (_env.platform_url(uri), username)
        except MantikError:
            return env_token
        with self._lock:
            current = self._current.get(key)
            if not force and current is not None and current.fresh():
                return current.access_token
            try:  # reads the token file first: no network call while that token is fresh
                fresh = _tokens.obtain(*key, password, force_refresh=force)
            except MantikError:
                return env_token
            self._current[key] = fresh
            os.environ["MLFLOW_TRACKING_TOKEN"] = fresh.access_token
            return fresh.access_token

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        token = self._token()
        if token:
            request.headers["Authorization"] = f"Bearer {token}"
        request.register_hook("response", self._retry_on_401)
        return request

    def _retry_on_401(self, response: requests.Response, **kwargs: Any) -> requests.Response:
        if response.status_code != 401 or getattr(response.request, "_mantik_retried", False):
            return response
        token = self._token(force=True)
        if not token:
            return response
        retry = response.request.copy()
        retry.headers["Authorization"] = f"Bearer {token}"
        retry._mantik_retried = True  # type: ignore[attr-defined]
        response.content  # noqa: B018 (drain before reusing the connection)
        response.raw.release_conn()
        new = response.connection.send(retry, **kwargs)
        new.history.append(response)
        return new


class MantikRequestAuthProvider(RequestAuthProvider):
    def get_name(self) -> str:
        return "mantik"

    def get_auth(self) -> requests.auth.AuthBase:
        return _RenewingBearer()
