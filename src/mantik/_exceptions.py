"""Exceptions raised by the mantik client.

Hierarchy::

    MantikError
    ├── ConfigurationError          bad or missing local settings (environment, files)
    │   └── MissingEnvironmentError
    ├── PlatformError               the platform answered with an error (has .status_code)
    │   └── AuthenticationError     the platform refused the credentials or token
    │       └── PasswordChangeRequired
    ├── PlatformUnreachable         no answer from the platform (network, TLS)
    └── RunTimeout                  a run did not end within the time waited for it

Third-party errors (httpx) are translated in one place, ``mantik.client._http``.
"""

from __future__ import annotations


class MantikError(Exception):
    """Root of every error mantik raises on purpose."""


class ConfigurationError(MantikError):
    """A local setting (environment variable, file, argument) is wrong."""


class MissingEnvironmentError(ConfigurationError):
    """Required environment variables are not set."""

    def __init__(self, missing: list[str]) -> None:
        self.missing = missing
        names = ", ".join(missing)
        super().__init__(f"Missing environment variable(s): {names}. Set them and try again.")


class PlatformError(MantikError):
    """The platform answered a request with an error."""

    def __init__(self, message: str, *, status_code: int | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code


class AuthenticationError(PlatformError):
    """The platform refused the credentials or the token."""


class PasswordChangeRequired(AuthenticationError):
    """The account still has its temporary password; set a new one first."""


class PlatformUnreachable(MantikError):
    """The platform could not be reached."""


class RunTimeout(MantikError):
    """A run did not end within the time waited for it (it keeps running)."""
