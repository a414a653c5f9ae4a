"""Identity errors (drawn in :mod:`mantik.server.errors`); the message is what the user sees,
``code`` a machine-readable hint, ``headers`` go with the answer (e.g. Retry-After)."""

from __future__ import annotations

from mantik.server.errors import ServerError


class IdentityError(ServerError):
    code: str | None = None

    def __init__(self, message: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.headers = headers or {}


class InvalidCredentials(IdentityError):
    pass


class InvalidRefreshToken(IdentityError):
    pass


class NewPasswordRequired(IdentityError):
    code = "NEW_PASSWORD_REQUIRED"


class SignInThrottled(IdentityError):
    pass


class BadRequest(IdentityError):
    pass


class Conflict(IdentityError):
    pass


class NotFound(IdentityError):
    pass
