"""Access tokens: acquired with the password, cached in ``~/.mantik/tokens.json``, refreshed.

The cache file holds only tokens (never passwords), is created 0600 in a 0700 folder and
replaced atomically, keyed by platform URL and user. Processes that share it refresh one at
a time (a lock file beside it): refresh tokens rotate, and a second use of one ends the
whole sign-in on the platform.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import tempfile
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows: no lock between processes
    fcntl = None  # type: ignore[assignment]

import httpx

from mantik._exceptions import AuthenticationError
from mantik.client import _http

# A cached token is renewed when less than a quarter of its lifetime is left, at most this
# much before it expires (a fixed 60 s renewed a 1-minute token before every request).
SAFETY_MARGIN = timedelta(seconds=60)
_RENEW_FRACTION = 4


def cache_path() -> Path:
    return Path.home() / ".mantik" / "tokens.json"


@dataclasses.dataclass(frozen=True)
class Tokens:
    """What :func:`mantik.init_tracking` returns: the access token MLflow now sends, when it
    expires, and the refresh token that renews it (cached in ``~/.mantik/tokens.json``)."""

    access_token: str
    expires_at: datetime
    refresh_token: str | None
    obtained_at: datetime | None = None  # when the platform issued it (None: unknown)

    def fresh(self, now: datetime | None = None) -> bool:
        margin = SAFETY_MARGIN
        if self.obtained_at is not None:
            margin = min(margin, (self.expires_at - self.obtained_at) / _RENEW_FRACTION)
        return self.expires_at - (now or datetime.now(UTC)) > margin

    @classmethod
    def from_wire(cls, body: object) -> Tokens:
        if not isinstance(body, dict) or not isinstance(body.get("AccessToken"), str):
            raise AuthenticationError("The platform sent no access token in its answer")
        expires = datetime.fromisoformat(str(body["ExpiresAt"]))
        if expires.tzinfo is None:
            expires = expires.replace(tzinfo=UTC)
        refresh = body.get("RefreshToken")
        refresh = refresh if isinstance(refresh, str) else None
        return cls(body["AccessToken"], expires, refresh, datetime.now(UTC))


class TokenCache:
    """The token file; safe against concurrent writers in one process."""

    _lock = threading.RLock()  # renewing, in this process
    _put_lock = threading.Lock()

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
            obtained = entry.get("obtained_at")
            return Tokens(
                access_token=str(entry["access_token"]),
                expires_at=datetime.fromisoformat(str(entry["expires_at"])),
                refresh_token=entry.get("refresh_token"),
                obtained_at=datetime.fromisoformat(obtained) if obtained else None,
            )
        except (KeyError, ValueError, TypeError):
            return None

    @contextlib.contextmanager
    def renewing(self) -> Iterator[None]:
        """Held while one process renews: the others wait, then find its tokens."""
        with self._lock:
            if fcntl is None:
                yield
                return
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd = os.open(self.path.with_name(".tokens.lock"), os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                yield
            finally:
                os.close(fd)  # releases the lock

    def put(self, url: str, username: str, tokens: Tokens | None) -> None:
        with self._put_lock:
            data = self._read_all()
            if tokens is None:
                data.pop(self.key(url, username), None)
            else:
                obtained = tokens.obtained_at
                data[self.key(url, username)] = {
                    "access_token": tokens.access_token,
                    "expires_at": tokens.expires_at.isoformat(),
                    "refresh_token": tokens.refresh_token,
                    "obtained_at": obtained.isoformat() if obtained else None,
                }
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
    before = cache.get(url, username)
    if before is not None and before.fresh() and not force_refresh:
        return before
    with cache.renewing():
        cached = cache.get(url, username)  # another process may just have renewed it
        if cached is not None and cached.fresh() and (not force_refresh or cached != before):
            return cached
        tokens = _renew(url, username, password, cached)
        cache.put(url, username, tokens)
    return tokens


def _renew(url: str, username: str, password: str, cached: Tokens | None) -> Tokens:
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
            tokens = dataclasses.replace(tokens, refresh_token=cached.refresh_token)
    finally:
        client.close()
    return tokens
