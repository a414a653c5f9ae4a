"""``/api/mantik/*`` token and password endpoints (mantik 0.1.x wire shapes) and JWKS."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response, status
from pydantic import AfterValidator, BaseModel, Field

from mantik._version import __version__
from mantik.server.api.deps import ClientAddress
from mantik.server.api.error_docs import IDENTITY_ERRORS
from mantik.server.identity.service import IdentityService

router = APIRouter(responses=IDENTITY_ERRORS)


def _no_nul(value: str) -> str:
    # No user name, password or token has one, and PostgreSQL cannot even look it up.
    if "\0" in value:
        raise ValueError("must not contain a NUL character")
    return value


Username = Annotated[str, Field(min_length=1, max_length=64), AfterValidator(_no_nul)]
Secret = Annotated[str, Field(min_length=1, max_length=1024), AfterValidator(_no_nul)]


class TokenCreate(BaseModel):
    username: Username
    password: Secret


class TokenRefresh(BaseModel):
    username: Username
    refresh_token: Secret


class PasswordChange(BaseModel):
    username: Username
    password: Secret
    new_password: Secret


class TokenResponse(BaseModel):
    AccessToken: str
    ExpiresAt: str = Field(description="ISO-8601 with offset, e.g. 2026-11-27T07:00:00+00:00")
    RefreshToken: str


def get_identity(request: Request) -> IdentityService:
    service: IdentityService = request.app.state.identity
    return service


Identity = Annotated[IdentityService, Depends(get_identity)]


@router.post("/api/mantik/tokens/create", status_code=201, response_model=TokenResponse)
def create_token(body: TokenCreate, identity: Identity, client: ClientAddress) -> dict[str, str]:
    return identity.sign_in(body.username, body.password, client).wire()


@router.post("/api/mantik/tokens/refresh", status_code=201, response_model=TokenResponse)
def refresh_token(body: TokenRefresh, identity: Identity) -> dict[str, str]:
    return identity.refresh(body.username, body.refresh_token).wire()


@router.post("/api/mantik/tokens/revoke", status_code=204)
def revoke_token(body: TokenRefresh, identity: Identity) -> Response:
    identity.revoke(body.username, body.refresh_token)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/api/mantik/password", status_code=204)
def change_password(body: PasswordChange, identity: Identity, client: ClientAddress) -> Response:
    identity.change_password(body.username, body.password, body.new_password, client)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/api/mantik/health")
def health() -> dict[str, str]:
    return {"status": "ok", "version": __version__}


@router.get("/.well-known/jwks.json")
def jwks(request: Request) -> dict[str, Any]:
    keys: dict[str, Any] = request.app.state.keyring.jwks()
    return keys
