"""A page on another site cannot act with a signed-in user's session cookie.

Before, the compute API took the cookie from any origin: a form on ``evil.example`` started a
job (code execution as the user) and cancelled runs.
"""

from __future__ import annotations

import io
import json
import zipfile

import httpx
import pytest

from tests.support.platform import PlatformProcess

EVIL = {"Origin": "http://evil.example"}
# A navigation or form from another site without Origin (older browsers) still says so.
EVIL_FETCH = {"Sec-Fetch-Site": "cross-site"}


def _project_zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("MLproject", "name: csrf\nentry_points:\n  main:\n    command: id\n")
    return buffer.getvalue()


@pytest.fixture
def victim(sqlite_platform: PlatformProcess) -> dict[str, str]:
    user = sqlite_platform.new_user("victim")
    token = sqlite_platform.access_token(user)
    experiment = httpx.post(
        f"{sqlite_platform.url}/api/2.0/mlflow/experiments/create",
        json={"name": f"{user[0]}-csrf"},
        headers={"Authorization": f"Bearer {token}"},
    ).json()["experiment_id"]
    return {
        "cookie": sqlite_platform.session_cookie(user),
        "token": token,
        "experiment": experiment,
    }


def _submit(platform: PlatformProcess, victim: dict[str, str], headers: dict[str, str]) -> int:
    response = httpx.post(
        f"{platform.url}/compute-backend/submit/{victim['experiment']}",
        cookies={"mantik_session": victim["cookie"]},
        headers=headers,
        data={"backend_config": json.dumps({"ComputeSite": "local"})},
        files={"mlproject_zip": ("p.zip", _project_zip(), "application/zip")},
        timeout=60,
    )
    return response.status_code


def _jobs(platform: PlatformProcess, victim: dict[str, str]) -> list[object]:
    response = httpx.get(
        f"{platform.url}/compute-backend/runs",
        params={"experiment_id": victim["experiment"]},
        headers={"Authorization": f"Bearer {victim['token']}"},
    )
    assert response.status_code == 200, response.text
    jobs: list[object] = response.json()
    return jobs


@pytest.mark.parametrize("headers", [EVIL, EVIL_FETCH], ids=["origin", "sec-fetch-site"])
def test_foreign_page_cannot_submit_with_the_cookie(
    sqlite_platform: PlatformProcess, victim: dict[str, str], headers: dict[str, str]
) -> None:
    assert _submit(sqlite_platform, victim, headers) == 403
    assert _jobs(sqlite_platform, victim) == []


def test_foreign_page_cannot_cancel_or_upload_images(
    sqlite_platform: PlatformProcess, victim: dict[str, str]
) -> None:
    cookie = {"mantik_session": victim["cookie"]}
    cancel = httpx.post(
        f"{sqlite_platform.url}/compute-backend/runs/{'0' * 32}/cancel",
        cookies=cookie,
        headers=EVIL,
    )
    assert cancel.status_code == 403
    image = httpx.put(
        f"{sqlite_platform.url}/compute-backend/images/{'a' * 64}",
        cookies=cookie,
        headers=EVIL,
        content=b"not an image",
    )
    assert image.status_code == 403
    password = httpx.post(
        f"{sqlite_platform.url}/api/mantik/tokens/revoke",
        cookies=cookie,
        headers=EVIL,
        json={"username": "x", "refresh_token": "y"},
    )
    assert password.status_code == 403


def test_own_pages_still_work_with_the_cookie(
    sqlite_platform: PlatformProcess, victim: dict[str, str]
) -> None:
    own = {"Origin": sqlite_platform.url, "Sec-Fetch-Site": "same-origin"}
    assert _submit(sqlite_platform, victim, own) == 201
    assert len(_jobs(sqlite_platform, victim)) == 1
    cancel = httpx.post(
        f"{sqlite_platform.url}/compute-backend/runs/{'0' * 32}/cancel",
        cookies={"mantik_session": victim["cookie"]},
        headers=own,
    )
    assert cancel.status_code == 404
