"""The one place where httpx errors become mantik errors."""

from __future__ import annotations

from typing import Any

import httpx

from mantik._exceptions import (
    AuthenticationError,
    PasswordChangeRequired,
    PlatformError,
    PlatformUnreachable,
)

TIMEOUT = httpx.Timeout(30.0, connect=10.0)


def error_message(response: httpx.Response) -> str:
    """The platform's own message from an error response, else the status line."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        detail = body.get("detail") or body.get("message")
        if isinstance(detail, str):
            return detail
        if detail is not None:
            return str(detail)
    text = response.text.strip()
    return text[:500] if text else f"HTTP {response.status_code} {response.reason_phrase}"


def raise_for_status(response: httpx.Response) -> None:
    if response.is_success:
        return
    message = error_message(response)
    code = None
    try:
        body = response.json()
        if isinstance(body, dict):
            code = body.get("code")
    except ValueError:
        pass
    if code == "NEW_PASSWORD_REQUIRED":
        raise PasswordChangeRequired(message, status_code=response.status_code)
    if response.status_code in (401, 403, 423, 429):
        raise AuthenticationError(message, status_code=response.status_code)
    raise PlatformError(
        f"{response.request.method} {response.request.url.path} failed "
        f"({response.status_code}): {message}",
        status_code=response.status_code,
    )


def request(client: httpx.Client, method: str, url: str, **kwargs: Any) -> httpx.Response:
    """Send a request; network and TLS failures become :class:`PlatformUnreachable`."""
    try:
        return client.request(method, url, **kwargs)
    except httpx.TransportError as exc:
        raise PlatformUnreachable(
            f"Could not reach the mantik platform at {url}: {exc or type(exc).__name__}. "
            "Check MLFLOW_TRACKING_URI and your network."
        ) from exc
