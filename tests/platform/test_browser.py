"""A real browser (Debian's headless Chromium via Playwright) against the real platform.

Sign-in with a temporary password, the forced password change, the MLflow UI showing only
the user's own experiments, the session cookie's flags, login errors, open-redirect
protection and sign-out.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from playwright.sync_api import Page, expect

from tests.support.browser import (
    UI_TIMEOUT_MS,
    bearer,
    create_experiment,
    session_cookies,
    sign_in,
    signs_out,
    wait_at,
)
from tests.support.platform import PlatformProcess, unique

pytestmark = pytest.mark.browser

SCREENSHOT = Path("/tmp/mantik-ui.png")


def test_first_sign_in_password_change_ui_and_sign_out(
    sqlite_platform: PlatformProcess, page: Page
) -> None:
    platform = sqlite_platform
    other = platform.new_user("b")
    create_experiment(platform, other, "b-secret")
    username, temporary = platform.new_user("a", ready=False)
    new_password = f"Nw-{username}-7#"
    mine = f"a-own-{username}"

    # No session: the UI sends the browser to the sign-in page, remembering where it was.
    page.goto(platform.url + "/")
    wait_at(page, platform, "/login", {"next": "/"})
    expect(page.get_by_role("heading", name="Sign in to mantik")).to_be_visible()

    # The temporary password is accepted only to choose a new one.
    sign_in(page, username, temporary)
    wait_at(page, platform, "/new-password", {"username": username, "next": "/"})
    assert session_cookies(page) == []
    expect(page.locator("#username")).to_have_value(username)
    page.locator("#password").fill(temporary)
    page.locator("#new_password").fill(new_password)
    page.locator("#new_password2").fill(new_password)
    page.get_by_role("button", name="Set password").click()

    # Signed in straight away and back where the browser started: the MLflow UI.
    wait_at(page, platform, "/", timeout=UI_TIMEOUT_MS)
    cookies = session_cookies(page)
    assert len(cookies) == 1, page.context.cookies()
    cookie = cookies[0]
    assert cookie["httpOnly"] is True
    assert cookie["sameSite"] == "Lax"
    assert cookie["secure"] is False  # plain http on loopback
    assert cookie["path"] == "/"
    assert "mantik_session" not in page.evaluate("document.cookie")

    # The new password works for the API too; the old one no longer does.
    create_experiment(platform, (username, new_password), mine)
    stale = httpx.post(
        f"{platform.url}/api/mantik/tokens/create",
        json={"username": username, "password": temporary},
        timeout=30,
    )
    assert stale.status_code >= 400

    # The experiment list shows the user's own experiment and nobody else's. Changing only
    # the fragment is a same-document navigation: reload, so the UI cannot reuse the list it
    # may have fetched before the experiment existed.
    page.goto(platform.url + "/#/experiments")
    with page.expect_response(
        lambda r: "/experiments/search" in r.url and r.request.method in ("GET", "POST"),
        timeout=UI_TIMEOUT_MS,
    ) as searched:
        page.reload()
    search = searched.value
    assert search.ok, search.text()
    names = [e["name"] for e in search.json().get("experiments", [])]
    assert mine in names and "b-secret" not in names, names
    expect(page.get_by_text(mine, exact=True).first).to_be_visible(timeout=UI_TIMEOUT_MS)
    expect(page.get_by_text("b-secret")).to_have_count(0)
    page.screenshot(path=str(SCREENSHOT), full_page=True)

    # Signing out (a POST from the /logout page) drops the cookie and ends the session on
    # the server too: a copy of the cookie no longer opens anything.
    page.goto(platform.url + "/logout")
    signs_out(page, platform, page.get_by_role("button", name="Sign out"))
    page.goto(platform.url + "/")
    wait_at(page, platform, "/login", {"next": "/"})


def test_a_deep_link_survives_sign_in(sqlite_platform: PlatformProcess, page: Page) -> None:
    """Before, /login?next=/#/experiments/… landed on Home: the fragment never reaches the
    server, and the sign-in form posted only what the server had seen."""
    platform = sqlite_platform
    user = platform.new_user("deeplink")
    experiment = create_experiment(platform, user, unique("deep-link"))
    created = httpx.post(
        f"{platform.url}/api/2.0/mlflow/runs/create",
        json={"experiment_id": experiment, "run_name": "the-linked-run"},
        headers=bearer(platform, user),
        timeout=30,
    )
    assert created.status_code == 200, created.text
    run_id = created.json()["run"]["info"]["run_id"]
    route = f"/experiments/{experiment}/runs/{run_id}"

    page.goto(f"{platform.url}/#{route}")  # a link from a mail or a chat, signed out
    wait_at(page, platform, "/login", {"next": "/"})
    sign_in(page, *user)
    page.wait_for_url(f"{platform.url}/#{route}", timeout=UI_TIMEOUT_MS)
    expect(page.get_by_text("the-linked-run").first).to_be_visible(timeout=UI_TIMEOUT_MS)


def test_the_ui_has_a_sign_out(sqlite_platform: PlatformProcess, page: Page) -> None:
    """Before, signing out meant typing /logout; the MLflow UI now shows a Sign out."""
    platform = sqlite_platform
    user = platform.new_user("signout")
    page.goto(f"{platform.url}/#/experiments")
    wait_at(page, platform, "/login", {"next": "/"})
    sign_in(page, *user)
    wait_at(page, platform, "/")
    button = page.get_by_role("button", name="Sign out")
    expect(button).to_be_visible(timeout=UI_TIMEOUT_MS)
    signs_out(page, platform, button)


def test_the_ui_links_to_the_jobs_page(sqlite_platform: PlatformProcess, page: Page) -> None:
    platform = sqlite_platform
    user = platform.new_user("jobslink")
    page.goto(f"{platform.url}/login")
    sign_in(page, *user)
    wait_at(page, platform, "/")
    link = page.get_by_role("link", name="Jobs", exact=True)
    expect(link).to_be_visible(timeout=UI_TIMEOUT_MS)
    link.click()
    wait_at(page, platform, "/jobs")
    expect(page.get_by_role("heading", name="Your jobs")).to_be_visible()
    # The jobs page has its own way back, and its own Sign out.
    expect(page.get_by_role("link", name="MLflow UI")).to_have_attribute("href", "/")
    signs_out(page, platform, page.get_by_role("button", name="Sign out"))


def test_login_errors_and_no_open_redirect(sqlite_platform: PlatformProcess, page: Page) -> None:
    platform = sqlite_platform
    username, password = platform.new_user("c")
    origin = urlsplit(platform.url).netloc

    # A wrong password: the sign-in page again, with an error, the username kept, no cookie.
    page.goto(platform.url + "/login")
    with page.expect_response(
        lambda r: r.url == platform.url + "/login" and r.request.method == "POST"
    ) as posted:
        sign_in(page, username, "Wrong-password-1!")
    assert posted.value.status in (400, 401, 403)
    wait_at(page, platform, "/login")
    expect(page.get_by_role("alert")).to_be_visible()
    expect(page.get_by_role("alert")).not_to_be_empty()
    expect(page.locator("#username")).to_have_value(username)
    assert session_cookies(page) == []

    # next=//evil.example (protocol-relative) and friends are dropped: home, not off-site.
    off_site = ["//evil.example", "https://evil.example/x", "/\\evil.example", "evil.example"]
    for target in off_site:
        page.context.clear_cookies()
        page.goto(platform.url + "/login?" + str(httpx.QueryParams({"next": target})))
        expect(page.locator("input[name=next]")).to_have_value("/")
        sign_in(page, username, password)
        wait_at(page, platform, "/")
        assert urlsplit(page.url).netloc == origin

    # The server checks ``next`` itself, not only the form it rendered.
    page.context.clear_cookies()
    page.goto(platform.url + "/login")
    page.locator("input[name=next]").evaluate("(el) => { el.value = '//evil.example/' }")
    sign_in(page, username, password)
    wait_at(page, platform, "/")
    assert urlsplit(page.url).netloc == origin

    # A same-site ``next`` is honoured.
    page.context.clear_cookies()
    page.goto(platform.url + "/version")
    wait_at(page, platform, "/login", {"next": "/version"})
    sign_in(page, username, password)
    wait_at(page, platform, "/version")
