"""Identity errors: each carries the HTTP status and the message the user sees."""

from __future__ import annotations


class IdentityError(Exception):
    status_code = 400
    code: str | None = None

    def __init__(self, message: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.headers = headers or {}


class InvalidCredentials(IdentityError):
    status_code = 401


class InvalidRefreshToken(IdentityError):
    status_code = 401


class NewPasswordRequired(IdentityError):
    status_code = 403
    code = "NEW_PASSWORD_REQUIRED"


class SignInThrottled(IdentityError):
    status_code = 429


class BadRequest(IdentityError):
    status_code = 400


class Conflict(IdentityError):
    status_code = 409


class NotFound(IdentityError):
    status_code = 404
