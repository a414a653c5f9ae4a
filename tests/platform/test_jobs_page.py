"""``/jobs`` in a real browser: a user's running job listed, its log followed, cancelled from
the page (KILLED shown); another user's jobs never appear; cross-site cancels and strangers
refused. Jobs run on the platform's ``local`` site."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Dialog, Page, expect

from tests.support.browser import bearer, create_experiment, sign_in, wait_at
from tests.support.platform import PlatformProcess, share_experiment, unique
from tests.support.projects import zipped

pytestmark = pytest.mark.browser

SCREENSHOT = Path("/tmp/mantik-jobs.png")
# Prints a numbered line every half second for five minutes.
TICKER = """import time
for i in range(600):
    print("tick", i, flush=True)
    time.sleep(0.5)
"""
CONFIG = {"ComputeSite": "local", "Resources": {"Runtime": "10m", "CPUs": 1}}
# A run name that would run a script if the page put it in as HTML.
HOSTILE_NAME = "<img src=x onerror=alert('xss')>"
STATE_TIMEOUT_MS = 90_000


@pytest.fixture
def ticker(tmp_path: Path) -> bytes:
    root = tmp_path / "ticker"
    root.mkdir()
    (root / "MLproject").write_text(
        "name: ticker\nentry_points:\n  main:\n    command: python ticker.py\n"
    )
    (root / "ticker.py").write_text(TICKER)
    return zipped(root)


Submit = Callable[[tuple[str, str], str, str], str]


@pytest.fixture
def submit(sqlite_platform: PlatformProcess, ticker: bytes) -> Iterator[Submit]:
    """Submit the ticker as a user (through the compute API); every run it made is
    cancelled at the end."""
    made: list[tuple[dict[str, str], str]] = []

    def run(user: tuple[str, str], experiment_id: str, run_name: str) -> str:
        headers = bearer(sqlite_platform, user)
        response = httpx.post(
            f"{sqlite_platform.url}/compute-backend/submit/{experiment_id}",
            headers=headers,
            files={"mlproject_zip": ("ticker.zip", ticker, "application/zip")},
            data={"backend_config": json.dumps(CONFIG), "run_name": run_name},
            timeout=120,
        )
        assert response.status_code == 201, response.text
        run_id: str = response.json()["run_id"]
        made.append((headers, run_id))
        return run_id

    yield run
    for headers, run_id in made:
        httpx.post(
            f"{sqlite_platform.url}/compute-backend/runs/{run_id}/cancel",
            headers=headers,
            timeout=60,
        )


def test_the_jobs_page_follows_a_job_and_cancels_it(
    sqlite_platform: PlatformProcess, page: Page, submit: Submit
) -> None:
    platform = sqlite_platform
    me, other = platform.new_user("jobs"), platform.new_user("jobs-other")
    experiment = create_experiment(platform, me, unique("jobs-page"))
    mine = submit(me, experiment, HOSTILE_NAME)
    theirs = submit(other, create_experiment(platform, other, unique("theirs")), "not-yours")
    alerts: list[str] = []

    def on_dialog(dialog: Dialog) -> None:
        alerts.append(dialog.message)
        dialog.accept()

    page.on("dialog", on_dialog)

    # Signed out, /jobs leads through sign-in and back.
    page.goto(platform.url + "/jobs")
    wait_at(page, platform, "/login", {"next": "/jobs"})
    sign_in(page, *me)
    wait_at(page, platform, "/jobs")

    row = page.locator(f"tr[data-run='{mine}']")
    # The hostile name is shown as text, never run.
    expect(row.get_by_role("link", name=HOSTILE_NAME)).to_be_visible()
    expect(row.locator(".badge")).to_have_text("RUNNING", timeout=STATE_TIMEOUT_MS)
    expect(row.get_by_role("link", name="MLflow run")).to_have_attribute(
        "href", f"/#/experiments/{experiment}/runs/{mine}"
    )
    assert page.locator(f"tr[data-run='{theirs}']").count() == 0
    assert "not-yours" not in page.content() and theirs not in page.content()
    page.screenshot(path=str(SCREENSHOT), full_page=True)

    # One job: its log is followed while it runs.
    row.get_by_role("link", name=HOSTILE_NAME).click()
    wait_at(page, platform, f"/jobs/{mine}")
    log = page.locator("#log")
    expect(log).to_contain_text("tick 2", timeout=STATE_TIMEOUT_MS)
    expect(log).to_contain_text("tick 8", timeout=STATE_TIMEOUT_MS)  # later lines arrive

    # Another site's page cannot cancel it (the browser would send the cookie along).
    cookie = {"mantik_session": platform.session_cookie(me)}
    forged = httpx.post(
        f"{platform.url}/jobs/{mine}/cancel",
        cookies=cookie,
        headers={"Origin": "https://evil.example"},
    )
    assert forged.status_code == 403
    # Nor can another user, signed in.
    stranger = httpx.post(
        f"{platform.url}/jobs/{mine}/cancel",
        cookies={"mantik_session": platform.session_cookie(other)},
        headers={"Origin": platform.url},
    )
    assert stranger.status_code in (403, 404), stranger.text
    assert "tick" not in stranger.text
    peek = httpx.get(
        f"{platform.url}/jobs/{mine}", cookies={"mantik_session": platform.session_cookie(other)}
    )
    assert peek.status_code in (403, 404) and "tick" not in peek.text
    # A colleague the experiment is shared with (READ) sees the job, and no Cancel.
    reader = platform.new_user("jobs-reader")
    shared = share_experiment(platform.client(me), experiment, reader[0])
    assert shared.status_code == 200, shared.text
    reader_cookie = {"mantik_session": platform.session_cookie(reader)}
    seen = httpx.get(f"{platform.url}/jobs/{mine}", cookies=reader_cookie)
    assert seen.status_code == 200 and "class=cancel" not in seen.text
    refused = httpx.post(
        f"{platform.url}/jobs/{mine}/cancel",
        cookies=reader_cookie,
        headers={"Origin": platform.url},
    )
    assert refused.status_code == 403, refused.text
    assert mine not in httpx.get(f"{platform.url}/jobs", cookies=reader_cookie).text
    # Signed out, a cancel only leads to sign-in (and back to the job, not to a repeat).
    anonymous = httpx.post(f"{platform.url}/jobs/{mine}/cancel", headers={"Origin": platform.url})
    assert anonymous.status_code == 303
    assert anonymous.headers["location"] == f"/login?next=/jobs/{mine}"
    expect(page.locator("#state .badge")).to_have_text("RUNNING")

    page.get_by_role("button", name="Cancel").click()
    wait_at(page, platform, f"/jobs/{mine}")
    expect(page.locator("#state .badge")).to_have_text("KILLED", timeout=STATE_TIMEOUT_MS)
    expect(page.get_by_role("button", name="Cancel")).to_have_count(0)
    assert alerts == ["Cancel this job?"]  # the confirmation, and no injected script

    page.goto(platform.url + "/jobs?status=KILLED")
    expect(page.locator(f"tr[data-run='{mine}'] .badge")).to_have_text("KILLED")
    page.goto(platform.url + "/jobs?status=RUNNING")
    expect(page.locator(f"tr[data-run='{mine}']")).to_have_count(0)
    page.goto(f"{platform.url}/jobs?experiment={experiment}")
    expect(page.locator(f"tr[data-run='{mine}']")).to_have_count(1)
    page.goto(f"{platform.url}/jobs?experiment={experiment}0")
    expect(page.get_by_text("No job matches.")).to_be_visible()


def test_the_jobs_page_asks_for_a_sign_in_and_says_what_is_wrong(
    sqlite_platform: PlatformProcess,
) -> None:
    platform = sqlite_platform
    signed_out = httpx.get(f"{platform.url}/jobs?status=FAILED")
    assert signed_out.status_code == 303
    assert signed_out.headers["location"] == "/login?next=/jobs%3Fstatus%3DFAILED"

    user = platform.new_user("jobs-errors")
    cookie = {"mantik_session": platform.session_cookie(user)}
    empty = httpx.get(f"{platform.url}/jobs", cookies=cookie)
    assert empty.status_code == 200
    assert "No jobs here yet" in empty.text
    assert "frame-ancestors 'none'" in empty.headers["content-security-policy"]

    wrong = httpx.get(f"{platform.url}/jobs?status=<b>DONE</b>", cookies=cookie)
    assert wrong.status_code == 400
    assert "Unknown state" in wrong.text and "<b>DONE" not in wrong.text

    unknown = httpx.get(f"{platform.url}/jobs/{'0' * 32}", cookies=cookie)
    assert unknown.status_code == 404
    assert "No submitted run" in unknown.text
