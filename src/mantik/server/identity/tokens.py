"""Signed JWT access tokens (RS256 with ``kid``) and opaque refresh tokens."""

from __future__ import annotations

import hashlib
import secrets
import time
import uuid
from dataclasses import dataclass
from typing import Any, Literal

import jwt

from mantik.server.identity.keyring import KeyRing
from mantik.server.identity.keys import ALGORITHM

AUDIENCE = "mantik"
TokenKind = Literal["access", "session", "job"]


class InvalidToken(Exception):
    """The token is missing, malformed, badly signed, expired or not for us."""


@dataclass(frozen=True)
class Principal:
    """Who a verified token speaks for."""

    username: str
    kind: TokenKind
    expires_at: float
    token_id: str
    run_id: str | None = None
    experiment_id: str | None = None
    # The account's token epoch at issue (IdentityService._end_sessions); 0 before it existed.
    epoch: int = 0
    # The sign-in an access token came from: signing out (revoking it) ends the token.
    session_id: str | None = None


class TokenService:
    def __init__(self, keys: KeyRing, issuer: str) -> None:
        self.keys = keys
        self.issuer = issuer

    def issue(
        self,
        username: str,
        kind: TokenKind,
        ttl_seconds: int,
        *,
        epoch: int | None = None,
        **claims: str,
    ) -> tuple[str, float]:
        now = int(time.time())
        expires = now + ttl_seconds
        payload: dict[str, Any] = {
            "iss": self.issuer,
            "aud": AUDIENCE,
            "sub": username,
            "iat": now,
            "nbf": now,
            "exp": expires,
            "jti": uuid.uuid4().hex,
            "typ": kind,
            **claims,
        }
        if epoch is not None:
            payload["epoch"] = epoch
        key = self.keys.signing_key()
        token = jwt.encode(payload, key.private_key, algorithm=ALGORITHM, headers={"kid": key.kid})
        return token, float(expires)

    def verify(self, token: str) -> Principal:
        try:
            header = jwt.get_unverified_header(token)
            kid = header.get("kid")
            key = self.keys.verification_key(kid) if isinstance(kid, str) else None
            if key is None:
                raise InvalidToken("Token was signed by an unknown key")
            claims = jwt.decode(
                token,
                key.public_key,
                algorithms=[ALGORITHM],
                audience=AUDIENCE,
                issuer=self.issuer,
                options={"require": ["exp", "iat", "sub", "typ", "jti"]},
                leeway=5,
            )
        except jwt.ExpiredSignatureError as exc:
            raise InvalidToken("Token has expired") from exc
        except jwt.PyJWTError as exc:
            raise InvalidToken(f"Token is invalid: {exc}") from exc
        kind = claims["typ"]
        if kind not in ("access", "session", "job"):
            raise InvalidToken("Token is invalid: unknown token type")
        epoch = claims.get("epoch", 0)
        if not isinstance(epoch, int) or isinstance(epoch, bool):
            raise InvalidToken("Token is invalid: bad epoch")
        return Principal(
            username=str(claims["sub"]),
            kind=kind,
            expires_at=float(claims["exp"]),
            token_id=str(claims["jti"]),
            run_id=claims.get("run_id"),
            experiment_id=claims.get("experiment_id"),
            epoch=epoch,
            session_id=claims.get("sid") if isinstance(claims.get("sid"), str) else None,
        )


def new_refresh_token() -> tuple[str, str]:
    """An opaque refresh token and the hash under which it is stored."""
    token = secrets.token_urlsafe(32)
    return token, hash_refresh_token(token)


def hash_refresh_token(token: str) -> str:
    # 256 random bits need no slow hash: SHA-256 is enough to make a stolen table useless.
    return hashlib.sha256(token.encode()).hexdigest()
