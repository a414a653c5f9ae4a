"""Identity API and token security, against the real platform process."""

from __future__ import annotations

import base64
import json
import time
import uuid
from datetime import datetime
from pathlib import Path

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.support.platform import PlatformProcess

CREATE = "/api/mantik/tokens/create"
REFRESH = "/api/mantik/tokens/refresh"
REVOKE = "/api/mantik/tokens/revoke"
PASSWORD = "/api/mantik/password"
SEARCH = "/api/2.0/mlflow/experiments/search"


def post(platform: PlatformProcess, path: str, body: object) -> httpx.Response:
    return httpx.post(platform.url + path, json=body, timeout=30)


def sign_in(platform: PlatformProcess, user: tuple[str, str]) -> dict[str, str]:
    response = post(platform, CREATE, {"username": user[0], "password": user[1]})
    assert response.status_code == 201, response.text
    body: dict[str, str] = response.json()
    return body


def api_status(platform: PlatformProcess, token: str | None) -> int:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    return httpx.post(
        platform.url + SEARCH, json={"max_results": 1}, headers=headers, timeout=30
    ).status_code


def test_token_wire_shape_is_mantik_0_1(sqlite_platform: PlatformProcess) -> None:
    body = sign_in(sqlite_platform, sqlite_platform.new_user())
    assert set(body) == {"AccessToken", "ExpiresAt", "RefreshToken"}
    expires = datetime.fromisoformat(body["ExpiresAt"])
    assert expires.utcoffset() is not None
    assert 3500 < expires.timestamp() - time.time() <= 3600
    header = jwt.get_unverified_header(body["AccessToken"])
    assert header["alg"] == "RS256"
    jwks = httpx.get(sqlite_platform.url + "/.well-known/jwks.json").json()
    assert [k["kid"] for k in jwks["keys"]] == [header["kid"]]
    public = jwt.PyJWK(jwks["keys"][0]).key
    claims = jwt.decode(body["AccessToken"], public, algorithms=["RS256"], audience="mantik")
    assert claims["sub"]
    assert api_status(sqlite_platform, body["AccessToken"]) == 200


def test_temporary_password_must_be_replaced_before_any_token(
    sqlite_platform: PlatformProcess,
) -> None:
    username, temporary = sqlite_platform.new_user(ready=False)
    response = post(sqlite_platform, CREATE, {"username": username, "password": temporary})
    assert response.status_code == 403
    assert response.json()["code"] == "NEW_PASSWORD_REQUIRED"
    assert "AccessToken" not in response.text
    new = "Brand-new-pw1"
    changed = post(
        sqlite_platform,
        PASSWORD,
        {"username": username, "password": temporary, "new_password": new},
    )
    assert changed.status_code == 204
    assert sign_in(sqlite_platform, (username, new))["AccessToken"]
    old = post(sqlite_platform, CREATE, {"username": username, "password": temporary})
    assert old.status_code == 401


@pytest.mark.parametrize(
    ("new_password", "missing"),
    [
        ("Sh0rt!", "at least 8 characters"),
        ("No-digits-here", "a number"),
        ("NoSpecial123", "a special character"),
        ("UPPER-ONLY-123", "a lowercase letter"),
        ("lower-only-123", "an uppercase letter"),
    ],
)
def test_password_rule_names_what_is_missing(
    sqlite_platform: PlatformProcess, new_password: str, missing: str
) -> None:
    username, temporary = sqlite_platform.new_user(ready=False)
    response = post(
        sqlite_platform,
        PASSWORD,
        {"username": username, "password": temporary, "new_password": new_password},
    )
    assert response.status_code == 400
    assert missing in response.json()["detail"]


def test_admin_cli_enforces_password_rule(sqlite_platform: PlatformProcess) -> None:
    result = sqlite_platform.admin(
        "users", "create", "weakling", "--temporary-password", "weak", check=False
    )
    assert result.returncode == 1
    assert "at least 8 characters" in result.stderr
    assert "Traceback" not in result.stderr


def test_admin_cli_generates_a_valid_temporary_password(sqlite_platform: PlatformProcess) -> None:
    result = sqlite_platform.admin("users", "create", f"gen-{time.time_ns()}")
    line = next(x for x in result.stdout.splitlines() if x.startswith("Temporary password: "))
    password = line.removeprefix("Temporary password: ")
    username = result.stdout.split("'")[1]
    response = post(sqlite_platform, CREATE, {"username": username, "password": password})
    assert response.json()["code"] == "NEW_PASSWORD_REQUIRED"


@pytest.mark.parametrize(
    "token",
    [None, "garbage", "a.b.c", "Basic"],
    ids=["missing", "garbage", "three-dots", "not-bearer"],
)
def test_requests_without_a_valid_token_get_401(
    sqlite_platform: PlatformProcess, token: str | None
) -> None:
    response = httpx.post(
        sqlite_platform.url + SEARCH,
        json={},
        headers={"Authorization": f"Bearer {token}"} if token is not None else {},
    )
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


def _claims(platform: PlatformProcess, user: str, **override: object) -> dict[str, object]:
    now = int(time.time())
    claims: dict[str, object] = {
        "iss": platform.url,
        "aud": "mantik",
        "sub": user,
        "iat": now,
        "exp": now + 600,
        "typ": "access",
        "jti": uuid.uuid4().hex,
    }
    claims.update(override)
    return claims


def test_forged_tokens_are_refused(sqlite_platform: PlatformProcess) -> None:
    user, password = sqlite_platform.new_user()
    issued = sign_in(sqlite_platform, (user, password))["AccessToken"]
    epoch = jwt.decode(issued, options={"verify_signature": False})["epoch"]
    real = sqlite_platform.signing_key()
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    wrong_signature = jwt.encode(
        _claims(sqlite_platform, user), other, algorithm="RS256", headers={"kid": real.kid}
    )
    assert api_status(sqlite_platform, wrong_signature) == 401

    def b64(data: dict[str, object]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    alg_none = f"{b64({'alg': 'none', 'kid': real.kid})}.{b64(_claims(sqlite_platform, user))}."
    assert api_status(sqlite_platform, alg_none) == 401

    expired = jwt.encode(
        _claims(sqlite_platform, user, iat=int(time.time()) - 7200, exp=int(time.time()) - 3600),
        real.private_key,
        algorithm="RS256",
        headers={"kid": real.kid},
    )
    assert api_status(sqlite_platform, expired) == 401
    wrong_audience = jwt.encode(
        _claims(sqlite_platform, user, aud="someone-else"),
        real.private_key,
        algorithm="RS256",
        headers={"kid": real.kid},
    )
    assert api_status(sqlite_platform, wrong_audience) == 401
    older_epoch = jwt.encode(
        _claims(sqlite_platform, user, epoch=epoch - 1),
        real.private_key,
        algorithm="RS256",
        headers={"kid": real.kid},
    )
    assert api_status(sqlite_platform, older_epoch) == 401
    # The control: the same key and claims, correctly formed, are accepted.
    valid = jwt.encode(
        _claims(sqlite_platform, user, epoch=epoch),
        real.private_key,
        algorithm="RS256",
        headers={"kid": real.kid},
    )
    assert api_status(sqlite_platform, valid) == 200


def test_refresh_rotates_and_a_replayed_token_ends_the_family(
    sqlite_platform: PlatformProcess,
) -> None:
    user = sqlite_platform.new_user()
    first = sign_in(sqlite_platform, user)
    second = post(
        sqlite_platform, REFRESH, {"username": user[0], "refresh_token": first["RefreshToken"]}
    )
    assert second.status_code == 201
    rotated = second.json()
    assert rotated["RefreshToken"] != first["RefreshToken"]
    assert api_status(sqlite_platform, rotated["AccessToken"]) == 200

    replay = post(
        sqlite_platform, REFRESH, {"username": user[0], "refresh_token": first["RefreshToken"]}
    )
    assert replay.status_code == 401
    assert "Refresh token is invalid" in replay.json()["detail"]
    # The replay revoked the whole family, including the newest token.
    newest = post(
        sqlite_platform, REFRESH, {"username": user[0], "refresh_token": rotated["RefreshToken"]}
    )
    assert newest.status_code == 401


def test_revoked_refresh_token_is_refused(sqlite_platform: PlatformProcess) -> None:
    user = sqlite_platform.new_user()
    tokens = sign_in(sqlite_platform, user)
    body = {"username": user[0], "refresh_token": tokens["RefreshToken"]}
    assert post(sqlite_platform, REVOKE, body).status_code == 204
    response = post(sqlite_platform, REFRESH, body)
    assert response.status_code == 401
    assert "Refresh token is invalid" in response.json()["detail"]


def test_refresh_token_of_another_user_is_refused(sqlite_platform: PlatformProcess) -> None:
    alice, bob = sqlite_platform.new_user(), sqlite_platform.new_user()
    tokens = sign_in(sqlite_platform, alice)
    response = post(
        sqlite_platform, REFRESH, {"username": bob[0], "refresh_token": tokens["RefreshToken"]}
    )
    assert response.status_code == 401


def test_unknown_user_and_wrong_password_look_the_same(sqlite_platform: PlatformProcess) -> None:
    username, _ = sqlite_platform.new_user()
    unknown = post(sqlite_platform, CREATE, {"username": "nobody-here", "password": "Whatever-1"})
    wrong = post(sqlite_platform, CREATE, {"username": username, "password": "Whatever-1"})
    assert unknown.status_code == wrong.status_code == 401
    assert unknown.json() == wrong.json()


def test_disabled_user_loses_access(sqlite_platform: PlatformProcess) -> None:
    user = sqlite_platform.new_user()
    tokens = sign_in(sqlite_platform, user)
    sqlite_platform.admin("users", "disable", user[0])
    assert (
        post(sqlite_platform, CREATE, {"username": user[0], "password": user[1]}).status_code == 401
    )
    refresh = post(
        sqlite_platform, REFRESH, {"username": user[0], "refresh_token": tokens["RefreshToken"]}
    )
    assert refresh.status_code == 401


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ("not json", 422),
        ({"username": "x"}, 422),
        ({"username": "x" * 65, "password": "y"}, 422),
        ({"username": "x", "password": "p" * 5000}, 422),
        ([1, 2, 3], 422),
    ],
    ids=["not-json", "missing-field", "long-username", "long-password", "array"],
)
def test_bad_input_gets_a_clear_4xx(
    sqlite_platform: PlatformProcess, body: object, status: int
) -> None:
    if isinstance(body, str):
        response = httpx.post(
            sqlite_platform.url + CREATE, content=body, headers={"content-type": "application/json"}
        )
    else:
        response = post(sqlite_platform, CREATE, body)
    assert response.status_code == status
    assert response.json()["detail"].startswith("Invalid request")


def test_huge_body_is_refused_with_413(sqlite_platform: PlatformProcess) -> None:
    response = httpx.post(
        sqlite_platform.url + CREATE,
        content=b'{"username": "' + b"x" * 200_000 + b'"}',
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 413

    def chunks():  # type: ignore[no-untyped-def]
        for _ in range(100):
            yield b"x" * 10_000

    streamed = httpx.post(sqlite_platform.url + CREATE, content=chunks())
    assert streamed.status_code == 413


def test_no_password_reaches_the_server_log(sqlite_platform: PlatformProcess) -> None:
    user = sqlite_platform.new_user()
    sign_in(sqlite_platform, user)
    post(sqlite_platform, CREATE, {"username": user[0], "password": "Wrong-pass-xyz1"})
    log = sqlite_platform.log_text()
    assert "POST /api/mantik/tokens/create" in log  # the log is really captured
    for secret in [*sqlite_platform.passwords, "Wrong-pass-xyz1"]:
        assert secret not in log


def test_keys_and_data_are_private(sqlite_platform: PlatformProcess) -> None:
    # The signing keys live in mantik's database, a file only the platform may read.
    data = Path(sqlite_platform.data_dir)
    assert (data / "mantik.db").stat().st_mode & 0o777 == 0o600
    assert data.stat().st_mode & 0o777 == 0o700
    assert not [p for p in data.rglob("*.pem")]


def test_cross_site_login_post_is_refused(sqlite_platform: PlatformProcess) -> None:
    username, password = sqlite_platform.new_user()
    form = {"username": username, "password": password, "next": "/"}
    evil = httpx.post(
        sqlite_platform.url + "/login", data=form, headers={"Origin": "https://evil.example"}
    )
    assert evil.status_code == 403
    assert "mantik_session" not in evil.cookies
    same = httpx.post(
        sqlite_platform.url + "/login", data=form, headers={"Origin": sqlite_platform.url}
    )
    assert same.status_code == 303
    assert "mantik_session" in same.cookies
