"""Events that must sign a user out everywhere do so at once, in every worker.

Before, after ``mantik admin users reset-password``, a password change, or disable→enable,
old access tokens and session cookies kept working until they expired (up to 8 h); and
parallel refreshes of one refresh token each minted a new pair.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.platform.test_identity import CREATE, REFRESH, post, sign_in
from tests.support.platform import PlatformProcess

SEARCH = "/api/2.0/mlflow/experiments/search"
TRIES = 6  # the fixture runs two workers: a handful of requests reaches both


def _answers(platform: PlatformProcess, token: str, cookie: str) -> set[int]:
    answers = set()
    for _ in range(TRIES):
        bearer = httpx.get(
            platform.url + SEARCH,
            params={"max_results": 1},
            headers={"Authorization": f"Bearer {token}"},
        )
        browser = httpx.get(
            platform.url + SEARCH,
            params={"max_results": 1},
            cookies={"mantik_session": cookie},
        )
        answers |= {bearer.status_code, browser.status_code}
    return answers


@pytest.fixture
def signed_in(sqlite_platform: PlatformProcess) -> dict[str, str]:
    user = sqlite_platform.new_user("sessions")
    tokens = sign_in(sqlite_platform, user)
    cookie = sqlite_platform.session_cookie(user)
    # Every worker has verified and cached both by now.
    assert _answers(sqlite_platform, tokens["AccessToken"], cookie) == {200}
    return {"username": user[0], "password": user[1], "cookie": cookie, **tokens}


def test_an_admin_reset_ends_every_session(
    sqlite_platform: PlatformProcess, signed_in: dict[str, str]
) -> None:
    sqlite_platform.admin(
        "users", "reset-password", signed_in["username"], "--temporary-password", "Reset-pass1"
    )
    assert _answers(sqlite_platform, signed_in["AccessToken"], signed_in["cookie"]) == {401}
    refresh = post(
        sqlite_platform,
        REFRESH,
        {"username": signed_in["username"], "refresh_token": signed_in["RefreshToken"]},
    )
    assert refresh.status_code == 401


def test_a_password_change_ends_the_old_sessions(
    sqlite_platform: PlatformProcess, signed_in: dict[str, str]
) -> None:
    changed = post(
        sqlite_platform,
        "/api/mantik/password",
        {
            "username": signed_in["username"],
            "password": signed_in["password"],
            "new_password": "Another-pass-7!",
        },
    )
    assert changed.status_code == 204, changed.text
    assert _answers(sqlite_platform, signed_in["AccessToken"], signed_in["cookie"]) == {401}
    fresh = sign_in(sqlite_platform, (signed_in["username"], "Another-pass-7!"))
    cookie = sqlite_platform.session_cookie((signed_in["username"], "Another-pass-7!"))
    assert _answers(sqlite_platform, fresh["AccessToken"], cookie) == {200}


def test_disable_then_enable_does_not_revive_old_tokens(
    sqlite_platform: PlatformProcess, signed_in: dict[str, str]
) -> None:
    sqlite_platform.admin("users", "disable", signed_in["username"])
    assert _answers(sqlite_platform, signed_in["AccessToken"], signed_in["cookie"]) == {401}
    sqlite_platform.admin("users", "enable", signed_in["username"])
    assert _answers(sqlite_platform, signed_in["AccessToken"], signed_in["cookie"]) == {401}
    fresh = sign_in(sqlite_platform, (signed_in["username"], signed_in["password"]))
    cookie = sqlite_platform.session_cookie((signed_in["username"], signed_in["password"]))
    assert _answers(sqlite_platform, fresh["AccessToken"], cookie) == {200}


def test_parallel_refreshes_rotate_once(platform: PlatformProcess) -> None:
    sqlite_platform = platform  # on both stores: PostgreSQL runs the refreshes truly at once
    user = sqlite_platform.new_user("refresh")
    tokens = sign_in(sqlite_platform, user)
    body = {"username": user[0], "refresh_token": tokens["RefreshToken"]}
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda _: post(sqlite_platform, REFRESH, body), range(8)))
    assert sorted(a.status_code for a in answers) == [201] + [401] * 7
    # The copies that lost count as reuse: the whole family ends, the winner's pair too.
    winner = next(a.json() for a in answers if a.status_code == 201)
    again = post(
        sqlite_platform, REFRESH, {"username": user[0], "refresh_token": winner["RefreshToken"]}
    )
    assert again.status_code == 401
    assert (
        post(sqlite_platform, CREATE, {"username": user[0], "password": user[1]}).status_code == 201
    )


def test_signing_out_ends_that_sign_ins_access_token(
    sqlite_platform: PlatformProcess, signed_in: dict[str, str]
) -> None:
    """Before, a revoked refresh token left its access token working for its 60 minutes."""
    other = sign_in(sqlite_platform, (signed_in["username"], signed_in["password"]))
    revoked = post(
        sqlite_platform,
        "/api/mantik/tokens/revoke",
        {"username": signed_in["username"], "refresh_token": signed_in["RefreshToken"]},
    )
    assert revoked.status_code == 204, revoked.text
    assert _answers(sqlite_platform, signed_in["AccessToken"], signed_in["cookie"]) == {200, 401}
    for _ in range(TRIES):
        bearer = httpx.get(
            sqlite_platform.url + SEARCH,
            params={"max_results": 1},
            headers={"Authorization": f"Bearer {signed_in['AccessToken']}"},
        )
        assert bearer.status_code == 401
    # The user's other sign-in (another device) is not touched.
    assert _answers(sqlite_platform, other["AccessToken"], signed_in["cookie"]) == {200}


def test_parallel_sign_outs_of_one_sign_in_all_succeed(platform: PlatformProcess) -> None:
    """Before, two sign-outs of the same sign-in at once both inserted its revocation: the
    loser's primary-key violation was a 500 (a browser tab and the CLI signing out)."""
    user = platform.new_user("signouts")
    for _ in range(SIGN_OUT_ROUNDS):
        _sign_out_in_parallel(platform, user)


SIGN_OUT_ROUNDS = 5  # a race: each round is one more chance for it


def _sign_out_in_parallel(platform: PlatformProcess, user: tuple[str, str]) -> None:
    tokens = sign_in(platform, user)
    body = {"username": user[0], "refresh_token": tokens["RefreshToken"]}
    cookie = platform.session_cookie(user)

    def sign_out_by_token(_: int) -> int:
        return post(platform, "/api/mantik/tokens/revoke", body).status_code

    def sign_out_in_browser(_: int) -> int:
        return httpx.post(
            f"{platform.url}/logout",
            cookies={"mantik_session": cookie},
            headers={"Origin": platform.url},
        ).status_code

    for sign_out, expected in ((sign_out_by_token, 204), (sign_out_in_browser, 303)):
        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(sign_out, range(16)))
        assert answers == [expected] * 16
    for _ in range(TRIES):
        assert (
            httpx.get(
                platform.url + SEARCH,
                params={"max_results": 1},
                headers={"Authorization": f"Bearer {tokens['AccessToken']}"},
            ).status_code
            == 401
        )
        assert (
            httpx.get(
                platform.url + SEARCH, params={"max_results": 1}, cookies={"mantik_session": cookie}
            ).status_code
            == 401
        )
