"""Typed dependencies shared by the API routes."""

from __future__ import annotations

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


def client_address(request: Request) -> str:
    """Where a sign-in comes from (the throttle's key). Behind a proxy, uvicorn puts the
    forwarded address here, for proxies listed in MANTIK_FORWARDED_ALLOW_IPS only."""
    return request.client.host if request.client else "unknown"


ClientAddress = Annotated[str, Depends(client_address)]
