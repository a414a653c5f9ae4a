"""Typed dependencies shared by the API routes."""

from __future__ import annotations

import contextlib
from typing import Annotated

from fastapi import Depends, HTTPException, Request

from mantik.server.identity.tokens import InvalidToken, Principal
from mantik.server.tracking import authorization


def current_principal(request: Request) -> Principal:
    """The caller, from a Bearer token or the browser session; job tokens are not enough."""
    token = authorization.bearer_token(request.headers.get("authorization")) or request.cookies.get(
        authorization.SESSION_COOKIE
    )
    if not token:
        raise HTTPException(
            401,
            "Authentication required: send 'Authorization: Bearer <token>'.",
            headers={"WWW-Authenticate": 'Bearer realm="mantik"'},
        )
    gate = authorization.current_gate()
    try:
        principal = gate.principal(token)
    except InvalidToken as exc:
        raise HTTPException(
            401, str(exc), headers={"WWW-Authenticate": 'Bearer realm="mantik"'}
        ) from exc
    if principal.kind == "job":
        raise HTTPException(403, "A job token cannot use the compute API.")
    return principal


CurrentUser = Annotated[Principal, Depends(current_principal)]


class SignInFirst(Exception):
    """A page asked for without a browser session; answered with a redirect to sign in
    (api.errors), and from there back to ``back_to``."""

    def __init__(self, back_to: str) -> None:
        super().__init__(back_to)
        self.back_to = back_to


def browser_user(request: Request) -> Principal:
    """The caller of one of mantik's pages: the browser session only (job tokens never).
    Without one, sign in and come back: to this page, or for a form post (which is not
    repeated) to the page of its form, the action's parent (``/jobs/<run>/cancel`` →
    ``/jobs/<run>``)."""
    token = request.cookies.get(authorization.SESSION_COOKIE)
    principal = None
    if token:
        with contextlib.suppress(InvalidToken):
            principal = authorization.current_gate().principal(token)
    if principal is not None and principal.kind != "job":
        return principal
    if request.method in ("GET", "HEAD"):
        query = request.url.query
        raise SignInFirst(request.url.path + (f"?{query}" if query else ""))
    raise SignInFirst(request.url.path.rsplit("/", 1)[0] or "/")


BrowserUser = Annotated[Principal, Depends(browser_user)]


def client_address(request: Request) -> str:
    """Where a sign-in comes from (the throttle's key). Behind a proxy, uvicorn puts the
    forwarded address here, for proxies listed in MANTIK_FORWARDED_ALLOW_IPS only."""
    return request.client.host if request.client else "unknown"


ClientAddress = Annotated[str, Depends(client_address)]
