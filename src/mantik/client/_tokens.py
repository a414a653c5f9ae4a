"""Access tokens: acquired with the password, cached in ``~/.mantik/tokens.json``, refreshed.

The cache file holds only tokens (never passwords), is created 0600 in a 0700 folder and
replaced atomically, keyed by platform URL and user.
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

from mantik._exceptions import AuthenticationError
from mantik.client import _http

# A cached token is reused only while it has at least this much life left.
SAFETY_MARGIN = timedelta(seconds=60)


def cache_path() -> Path:
    return Path.home() / ".mantik" / "tokens.json"


@dataclass(frozen=True)
class Tokens:
    """What :func:`mantik.init_tracking` returns: the access token MLflow now sends, when it
    expires, and the refresh token that renews it (cached in ``~/.mantik/tokens.json``)."""

    access_token: str
    expires_at: datetime
    refresh_token: str | None

    def fresh(self, now: datetime | None = None) -> bool:
        return self.expires_at - (now or datetime.now(UTC)) > SAFETY_MARGIN

    @classmethod
    def from_wire(cls, body: object) -> Tokens:
        if not isinstance(body, dict) or not isinstance(body.get("AccessToken"), str):
            raise AuthenticationError("The platform sent no access token in its answer")
        expires = datetime.fromisoformat(str(body["ExpiresAt"]))
        if expires.tzinfo is None:
            expires = expires.replace(tzinfo=UTC)
        refresh = body.get("RefreshToken")
        return cls(body["AccessToken"], expires, refresh if isinstance(refresh, str) else None)


class TokenCache:
    """The token file; safe against concurrent writers in one process."""

    _lock = threading.Lock()

    def __init__(self, path: Path | None = None) -> None:
        self.path = path or cache_path()

    @staticmethod
    def key(url: str, username: str) -> str:
        return f"{url}|{username}"

    def _read_all(self) -> dict[str, dict[str, str | None]]:
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def get(self, url: str, username: str) -> Tokens | None:
        entry = self._read_all().get(self.key(url, username))
        if not isinstance(entry, dict):
            return None
        try:
            return Tokens(
                access_token=str(entry["access_token"]),
                expires_at=datetime.fromisoformat(str(entry["expires_at"])),
                refresh_token=entry.get("refresh_token"),
            )
        except (KeyError, ValueError):
            return None

    def put(self, url: str, username: str, tokens: Tokens | None) -> None:
        with self._lock:
            data = self._read_all()
            if tokens is None:
                data.pop(self.key(url, username), None)
            else:
                entry = asdict(tokens)
                entry["expires_at"] = tokens.expires_at.isoformat()
                data[self.key(url, username)] = entry
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".tokens-")  # 0600
            try:
                with os.fdopen(fd, "w") as handle:
                    json.dump(data, handle, indent=1)
                os.replace(tmp, self.path)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise


class TokenClient:
    """Talks to ``/api/mantik/tokens/*`` and ``/api/mantik/password``."""

    def __init__(self, url: str, *, verify: bool | str = True) -> None:
        self.url = url
        self._http = httpx.Client(base_url=url, timeout=_http.TIMEOUT, verify=verify)

    def close(self) -> None:
        self._http.close()

    def _post(self, path: str, body: dict[str, str]) -> httpx.Response:
        response = _http.request(self._http, "POST", path, json=body)
        _http.raise_for_status(response)
        return response

    def create(self, username: str, password: str) -> Tokens:
        body = {"username": username, "password": password}
        return Tokens.from_wire(self._post("/api/mantik/tokens/create", body).json())

    def refresh(self, username: str, refresh_token: str) -> Tokens:
        body = {"username": username, "refresh_token": refresh_token}
        return Tokens.from_wire(self._post("/api/mantik/tokens/refresh", body).json())

    def revoke(self, username: str, refresh_token: str) -> None:
        body = {"username": username, "refresh_token": refresh_token}
        self._post("/api/mantik/tokens/revoke", body)

    def change_password(self, username: str, password: str, new_password: str) -> None:
        body = {"username": username, "password": password, "new_password": new_password}
        self._post("/api/mantik/password", body)


def obtain(
    url: str,
    username: str,
    password: str,
    *,
    cache: TokenCache | None = None,
    force_refresh: bool = False,
) -> Tokens:
    """A valid access token: cached if fresh, else refreshed, else signed in anew."""
    cache = cache or TokenCache()
    cached = cache.get(url, username)
    if cached is not None and cached.fresh() and not force_refresh:
        return cached
    client = TokenClient(url)
    try:
        tokens = None
        if cached is not None and cached.refresh_token:
            try:
                tokens = client.refresh(username, cached.refresh_token)
            except AuthenticationError:
                tokens = None  # dead refresh token: fall back to the password
        if tokens is None:
            tokens = client.create(username, password)
        if tokens.refresh_token is None and cached is not None:
            tokens = Tokens(tokens.access_token, tokens.expires_at, cached.refresh_token)
    finally:
        client.close()
    cache.put(url, username, tokens)
    return tokens
