"""MLflow's ``authorization_function``: who is calling, from a Bearer JWT or the session cookie.

MLflow calls :func:`authorize` with no arguments inside a Flask request context, several
times per request, so verified tokens and account states are cached (``auth_cache_seconds``).
The gate is installed once per worker by the app factory: MLflow's plugin contract leaves no
other way to hand it state.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from urllib.parse import quote

from flask import Response
from werkzeug.datastructures import Authorization

from mantik import _mlflow_internals as mlflow_internals
from mantik.server.change_stamp import ChangeStamp
from mantik.server.identity.service import AccountState
from mantik.server.identity.tokens import InvalidToken, Principal, TokenService
from mantik.server.tracking import job_scope, ownership_rules, request_rules

SESSION_COOKIE = "mantik_session"
_MAX_CACHE = 10_000
_JOB_TOKEN_RECHECK = 5.0


class AuthGate:
    """Verifies tokens with a small time-bounded cache; knows which accounts are active and
    which of their tokens a password change, reset or disable ended (``account_changes``:
    a cached account state older than the last such change, in any worker, is not used)."""

    def __init__(
        self,
        tokens: TokenService,
        account_state: Callable[[str], AccountState | None],
        account_changes: ChangeStamp,
        is_revoked: Callable[..., bool],
        ensure_mlflow_user: Callable[[str], None],
        cache_seconds: float,
    ) -> None:
        self._tokens = tokens
        self._account_state = account_state
        self._account_changes = account_changes
        self._is_revoked = is_revoked
        self._ensure_mlflow_user = ensure_mlflow_user
        self._ttl = cache_seconds
        self._verified: dict[str, tuple[Principal, float, int]] = {}
        self._accounts: dict[str, tuple[AccountState | None, float, int]] = {}
        self._known_mlflow_users: set[str] = set()
        self._lock = threading.Lock()

    def principal(self, token: str) -> Principal:
        now = time.time()
        # Read before the lookups below: a sign-out or account change made meanwhile, at any
        # worker or replica, ends what they answer at the next request.
        changed = self._account_changes.read()
        cached = self._verified.get(token)
        if (
            cached is not None
            and cached[1] > now
            and cached[0].expires_at > now
            and cached[2] == changed
        ):
            principal = cached[0]
        else:
            principal = self._tokens.verify(token)
            if self._is_revoked(principal.token_id, principal.session_id):
                raise InvalidToken("Token has been revoked")
            # Job tokens are revoked when their job ends: look again sooner.
            ttl = min(self._ttl, _JOB_TOKEN_RECHECK) if principal.kind == "job" else self._ttl
            with self._lock:
                if len(self._verified) >= _MAX_CACHE:
                    self._verified.clear()
                self._verified[token] = (principal, now + ttl, changed)
        account = self._account(principal.username, now, changed)
        if account is None or not account.active:
            raise InvalidToken("Token is invalid: the account is disabled or unknown")
        if principal.kind != "job" and principal.epoch < account.token_epoch:
            raise InvalidToken(
                "Token is invalid: it was issued before a password change, reset or "
                "disabling of the account; sign in again"
            )
        if principal.username not in self._known_mlflow_users:
            self._ensure_mlflow_user(principal.username)
            self._known_mlflow_users.add(principal.username)
        return principal

    def _account(self, username: str, now: float, changed: int) -> AccountState | None:
        cached = self._accounts.get(username)
        if cached is not None and cached[1] > now and cached[2] == changed:
            return cached[0]
        account = self._account_state(username)
        with self._lock:
            if len(self._accounts) >= _MAX_CACHE:
                self._accounts.clear()
            self._accounts[username] = (account, now + self._ttl, changed)
        return account

    def forget(self, token: str) -> None:
        with self._lock:
            self._verified.pop(token, None)


_gate: AuthGate | None = None


def install(gate: AuthGate) -> None:
    global _gate
    _gate = gate


def current_gate() -> AuthGate:
    if _gate is None:  # pragma: no cover - a wiring mistake, not a user error
        raise RuntimeError("mantik's AuthGate was not installed")
    return _gate


def forget(token: str) -> None:
    """Drop a token from this worker's cache (others notice within the cache time)."""
    if _gate is not None:
        _gate.forget(token)


def bearer_token(header: str | None) -> str | None:
    if header and header[:7].lower() == "bearer ":
        token = header[7:].strip()
        return token or None
    return None


def _wants_html(request: object) -> bool:
    from flask import Request

    assert isinstance(request, Request)
    accept = request.headers.get("Accept", "")
    return request.method == "GET" and "text/html" in accept and "/api/" not in request.path


def _challenge(message: str) -> Response:
    from flask import request

    if _wants_html(request):
        target = request.full_path.rstrip("?")
        return Response(status=302, headers={"Location": f"/login?next={quote(target)}"})
    response = Response(
        json.dumps({"error_code": "UNAUTHENTICATED", "message": message}),
        status=401,
        mimetype="application/json",
    )
    response.headers["WWW-Authenticate"] = 'Bearer realm="mantik"'
    return response


def _refuse(status: int, error_code: str, message: str) -> Response:
    return Response(
        json.dumps({"error_code": error_code, "message": message}),
        status=status,
        mimetype="application/json",
    )


def _is_mlflow_admin(username: str) -> bool:
    return bool(mlflow_internals.permission_store().get_user(username).is_admin)


def _logged_model_experiment(model_id: str) -> str | None:
    from mlflow.exceptions import MlflowException

    try:
        return str(mlflow_internals.tracking_store().get_logged_model(model_id).experiment_id)
    except MlflowException:
        return None


def authorize() -> Authorization | Response:
    """The ``authorization_function`` named in MLflow's auth config."""
    from flask import request

    if _gate is None:  # pragma: no cover - a wiring mistake, not a user error
        raise RuntimeError("mantik's AuthGate was not installed")
    token = bearer_token(request.headers.get("Authorization")) or request.cookies.get(
        SESSION_COOKIE
    )
    if not token:
        return _challenge("Authentication required: send 'Authorization: Bearer <token>'.")
    try:
        principal = _gate.principal(token)
    except InvalidToken as exc:
        return _challenge(str(exc))
    body = request_rules.mlflow_body(request)
    try:
        request_rules.check(request, body, lambda: _is_mlflow_admin(principal.username))
        ownership_rules.check(request, body, principal.username)
    except request_rules.Refusal as refusal:
        return _refuse(refusal.status, refusal.error_code, refusal.message)
    if principal.kind == "job" and not job_scope.allows(
        principal, request.method, request.path, request.args, body, _logged_model_experiment
    ):
        return _refuse(
            403,
            "PERMISSION_DENIED",
            f"A job token may only write to its run {principal.run_id}.",
        )
    return Authorization("bearer", {"username": principal.username})
