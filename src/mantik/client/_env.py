"""Reading the client's settings from the environment, all in one place."""

from __future__ import annotations

import os
from urllib.parse import urlsplit

from mantik._exceptions import ConfigurationError, MissingEnvironmentError

USERNAME = "MANTIK_USERNAME"
PASSWORD = "MANTIK_PASSWORD"  # noqa: S105 (a variable name, not a secret)
TRACKING_URI = "MLFLOW_TRACKING_URI"


def require(*names: str) -> dict[str, str]:
    """Return the values of ``names``; one error lists every missing or empty one."""
    values = {name: os.environ.get(name, "") for name in names}
    missing = [name for name, value in values.items() if not value]
    if missing:
        raise MissingEnvironmentError(missing)
    return values


def platform_url(raw: str, *, source: str = TRACKING_URI) -> str:
    """Normalise the platform base URL (``https://host[:port][/prefix]``, no trailing slash)."""
    url = raw.strip().rstrip("/")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigurationError(
            f"{source}={raw!r} is not a URL of the mantik platform: it must start with "
            "https:// (or http:// for a local platform), "
            f"e.g. https://{url or 'mantik.example.org'}"
        )
    if parts.query or parts.fragment:
        raise ConfigurationError(f"{source}={raw!r} must not contain '?' or '#'")
    return url
