"""Failed sign-ins slow down the address that makes them, not the account's owner.

Before, five wrong passwords from anywhere locked the account for 15 minutes: any stranger
could lock out anyone. Loopback has many addresses: each test's "attacker" connects from
its own 127.0.0.x, the owner from 127.0.0.1.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import httpx

from tests.platform.test_identity import CREATE
from tests.support.platform import PlatformProcess

FREE = 5  # MANTIK_MAX_FAILED_LOGINS in the fixture (the default)


def _from(address: str) -> httpx.Client:
    return httpx.Client(transport=httpx.HTTPTransport(local_address=address), timeout=30)


def _try(
    client: httpx.Client, platform: PlatformProcess, user: str, password: str
) -> httpx.Response:
    return client.post(platform.url + CREATE, json={"username": user, "password": password})


def test_a_stranger_cannot_lock_the_owner_out(sqlite_platform: PlatformProcess) -> None:
    username, password = sqlite_platform.new_user()
    with _from("127.0.0.2") as stranger:
        answers = [
            _try(stranger, sqlite_platform, username, "Wrong-pass1").status_code
            for _ in range(FREE + 3)
        ]
        assert answers[:FREE] == [401] * FREE
        assert 429 in answers[FREE:]
        # The stranger's wait also holds for the right password: no oracle while waiting.
        assert _try(stranger, sqlite_platform, username, password).status_code == 429
    with _from("127.0.0.1") as owner:
        assert _try(owner, sqlite_platform, username, password).status_code == 201


def test_delays_grow_and_say_how_long(sqlite_platform: PlatformProcess) -> None:
    username, password = sqlite_platform.new_user()
    with _from("127.0.0.3") as client:
        for _ in range(FREE):
            assert _try(client, sqlite_platform, username, "Wrong-pass1").status_code == 401
        assert (
            _try(client, sqlite_platform, username, "Wrong-pass1").status_code == 401
        )  # waits 1 s
        first = _try(client, sqlite_platform, username, "Wrong-pass1")
        assert first.status_code == 429
        assert first.headers["Retry-After"] == "1"
        assert "try again in 1 s" in first.json()["detail"]
        time.sleep(1.2)
        assert _try(client, sqlite_platform, username, "Wrong-pass1").status_code == 401  # 2 s
        second = _try(client, sqlite_platform, username, "Wrong-pass1")
        assert second.status_code == 429
        assert second.headers["Retry-After"] == "2"
        time.sleep(2.2)
        # Success forgives the address: the next mistakes are free again.
        assert _try(client, sqlite_platform, username, password).status_code == 201
        assert _try(client, sqlite_platform, username, "Wrong-pass1").status_code == 401
        assert _try(client, sqlite_platform, username, password).status_code == 201


def test_parallel_guesses_are_counted_one_by_one(sqlite_platform: PlatformProcess) -> None:
    username, _ = sqlite_platform.new_user()
    with _from("127.0.0.4") as client, ThreadPoolExecutor(16) as pool:
        answers = list(
            pool.map(
                lambda _: _try(client, sqlite_platform, username, "Wrong-pass1").status_code,
                range(32),
            )
        )
    # Five free guesses, a sixth that starts the wait, then only refusals.
    assert answers.count(401) == FREE + 1, answers
    assert answers.count(429) == 32 - FREE - 1


def test_unknown_accounts_are_throttled_alike(sqlite_platform: PlatformProcess) -> None:
    with _from("127.0.0.5") as client:
        answers = [
            _try(client, sqlite_platform, "nobody-at-all", "Wrong-pass1").status_code
            for _ in range(FREE + 2)
        ]
    assert answers == [401] * (FREE + 1) + [429]


def test_an_admin_reset_lifts_the_wait(sqlite_platform: PlatformProcess) -> None:
    username, _ = sqlite_platform.new_user()
    with _from("127.0.0.6") as client:
        for _ in range(FREE + 2):
            _try(client, sqlite_platform, username, "Wrong-pass1")
        assert _try(client, sqlite_platform, username, "Wrong-pass1").status_code == 429
        sqlite_platform.admin(
            "users", "reset-password", username, "--temporary-password", "Reset-pass1"
        )
        reset = _try(client, sqlite_platform, username, "Reset-pass1")
        assert reset.json()["code"] == "NEW_PASSWORD_REQUIRED"


def test_a_forwarded_for_header_is_not_believed_by_default(
    sqlite_platform: PlatformProcess,
) -> None:
    """Without MANTIK_FORWARDED_ALLOW_IPS no peer is a proxy, loopback neither (uvicorn alone
    trusts 127.0.0.1): a guesser cannot shift its failures onto someone else's address."""
    username, password = sqlite_platform.new_user()
    framed = "127.0.0.8"
    with _from("127.0.0.1") as guesser:
        for _ in range(FREE + 2):
            guesser.post(
                sqlite_platform.url + CREATE,
                json={"username": username, "password": "Wrong-pass1"},
                headers={"X-Forwarded-For": framed},
            )
        assert _try(guesser, sqlite_platform, username, password).status_code == 429
    with _from(framed) as owner:
        assert _try(owner, sqlite_platform, username, password).status_code == 201
