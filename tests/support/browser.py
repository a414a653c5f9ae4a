"""A real browser for tests: Debian's headless Chromium through Playwright, one fresh
profile per test, and the steps every browser test takes (sign in, wait for a page, sign out)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from urllib.parse import parse_qsl, urlsplit

import httpx
import pytest
from playwright.sync_api import Browser, Locator, Page, sync_playwright

from tests.support.platform import PlatformProcess

CHROMIUM = "/usr/bin/chromium"
# We run as root on a closed network: no sandbox, no GPU, nothing that phones home.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# The MLflow UI is a large React bundle; the test machines are slow.
UI_TIMEOUT_MS = 60_000
PAGE_TIMEOUT_MS = 30_000


def unavailable(what: str) -> None:
    """As tests/support/services.py: skip locally, fail under CI (``make test`` installs it)."""
    message = f"{what} is not installed: run scripts/system-deps.sh (or `make test`)"
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not os.access(CHROMIUM, os.X_OK):
        unavailable(f"Debian's chromium ({CHROMIUM})")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True
        )
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    """A fresh browser profile (no cookies) per test."""
    context = browser.new_context()
    context.set_default_timeout(PAGE_TIMEOUT_MS)
    context.set_default_navigation_timeout(PAGE_TIMEOUT_MS)
    try:
        yield context.new_page()
    finally:
        context.close()


def bearer(platform: PlatformProcess, user: tuple[str, str]) -> dict[str, str]:
    response = httpx.post(
        f"{platform.url}/api/mantik/tokens/create",
        json={"username": user[0], "password": user[1]},
        timeout=30,
    )
    assert response.status_code == 201, response.text
    return {"Authorization": f"Bearer {response.json()['AccessToken']}"}


def create_experiment(platform: PlatformProcess, user: tuple[str, str], name: str) -> str:
    response = httpx.post(
        f"{platform.url}/api/2.0/mlflow/experiments/create",
        json={"name": name},
        headers=bearer(platform, user),
        timeout=30,
    )
    assert response.status_code == 200, response.text
    experiment_id: str = response.json()["experiment_id"]
    return experiment_id


def wait_at(
    page: Page,
    platform: PlatformProcess,
    path: str,
    query: dict[str, str] | None = None,
    timeout: float = PAGE_TIMEOUT_MS,
) -> None:
    """Wait until the page is at ``path`` on the platform with exactly this (decoded) query."""

    def matches(url: str) -> bool:
        parts = urlsplit(url)
        return (
            f"{parts.scheme}://{parts.netloc}" == platform.url
            and parts.path == path
            and dict(parse_qsl(parts.query, keep_blank_values=True)) == (query or {})
        )

    page.wait_for_url(matches, timeout=timeout)


def sign_in(page: Page, username: str, password: str) -> None:
    page.locator("#username").fill(username)
    page.locator("#password").fill(password)
    page.get_by_role("button", name="Sign in").click()


def session_cookies(page: Page) -> list[dict[str, object]]:
    return [dict(c) for c in page.context.cookies() if c["name"] == "mantik_session"]


def signs_out(page: Page, platform: PlatformProcess, button: Locator) -> None:
    """Clicking ``button`` lands on /login without the cookie, and ends the session on the
    server too: a copy of the cookie no longer opens anything."""
    stolen = session_cookies(page)[0]["value"]
    button.click()
    wait_at(page, platform, "/login")
    assert session_cookies(page) == []
    replay = httpx.get(
        platform.url + "/api/2.0/mlflow/experiments/search?max_results=1",
        cookies={"mantik_session": stolen},
    )
    assert replay.status_code == 401
