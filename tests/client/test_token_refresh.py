"""Access tokens with a short lifetime (1 minute): renewed when a quarter of it is left, and
by one process at a time when several share the token cache."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mantik.client import _tokens
from tests.support.platform import PlatformProcess, start_platform

SHARERS = 4


@pytest.fixture(scope="module")
def short_lived(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PlatformProcess]:
    data_dir = tmp_path_factory.mktemp("short-tokens")
    env = {"MANTIK_ACCESS_TOKEN_MINUTES": "1"}
    with start_platform(data_dir, env=env, workers=1) as platform:
        yield platform


def _calls(platform: PlatformProcess, path: str) -> int:
    return platform.log_text().count(f'"POST {path} HTTP/1.1"')


def test_a_one_minute_token_is_reused_until_a_quarter_is_left(
    short_lived: PlatformProcess, tmp_path: Path
) -> None:
    username, password = short_lived.new_user("short")
    cache = _tokens.TokenCache(tmp_path / "tokens.json")
    first = _tokens.obtain(short_lived.url, username, password, cache=cache)
    refreshes = _calls(short_lived, "/api/mantik/tokens/refresh")
    for _ in range(20):
        assert _tokens.obtain(short_lived.url, username, password, cache=cache) == first
    assert _calls(short_lived, "/api/mantik/tokens/refresh") == refreshes
    lifetime = first.expires_at - first.obtained_at  # type: ignore[operator]
    assert first.fresh(first.expires_at - lifetime / 4 * 1.1)
    assert not first.fresh(first.expires_at - lifetime / 4 * 0.9)


# Each process renews at the same moment from the shared cache; with a wrong password, a
# process whose refresh token was ended (reuse) cannot sign in again: it fails.
_SHARER = """
import sys, time
from mantik.client import _tokens
url, username, start = sys.argv[1], sys.argv[2], float(sys.argv[3])
time.sleep(max(0.0, start - time.time()))
tokens = _tokens.obtain(url, username, "not-the-password", force_refresh=True)
print(tokens.access_token[-12:])
"""


def test_processes_sharing_a_cache_renew_without_ending_the_sign_in(
    short_lived: PlatformProcess, tmp_path: Path
) -> None:
    username, password = short_lived.new_user("sharing")
    home = tmp_path / "shared-home"
    _tokens.obtain(
        short_lived.url,
        username,
        password,
        cache=_tokens.TokenCache(home / ".mantik" / "tokens.json"),
    )
    start = time.time() + 4
    env = {**os.environ, "HOME": str(home)}
    sharers = [
        subprocess.Popen(
            [sys.executable, "-c", _SHARER, short_lived.url, username, str(start)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(SHARERS)
    ]
    results = [sharer.communicate(timeout=120) for sharer in sharers]
    failed = [err for (_, err), sharer in zip(results, sharers, strict=True) if sharer.returncode]
    assert failed == [], failed[0][-600:] if failed else ""
    # The sign-in lives on: its newest refresh token still renews.
    cache = _tokens.TokenCache(home / ".mantik" / "tokens.json")
    assert _tokens.obtain(
        short_lived.url, username, "not-the-password", cache=cache, force_refresh=True
    )
