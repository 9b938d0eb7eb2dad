"""The console in a real Chromium (Debian's, driven by Playwright) against a real worker and
scheduler: log in, find a failed job by its payload, read its traceback, retry it and watch it
succeed; bulk-cancel 1,000 scheduled jobs; pause a queue and see nothing start; settle a
message that needs review; refusals for a viewer and for a post without its CSRF token.
Screenshots of the overview, a job page and the schedules page land in tests/artifacts/console/."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Iterator

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright
from sqlalchemy import text

from shared.db import Database
from shared.enqueue import enqueue_many_now, enqueue_now
from shared.schedules import add_schedule
from tests.console.browser import ARTIFACTS, CHROMIUM_ARGS, ConsoleServer, ensure_chromium, serve
from tests.console.console_fixture import PASSWORDS
from tests.processes import ProcessFactory, wait_for
from tests.workload_data import add_message, add_user

pytestmark = pytest.mark.acceptance
WAIT_MS = 90_000


@pytest.fixture(scope="session")
def chromium() -> str:
    return ensure_chromium()


@pytest.fixture(scope="session")
def browser(chromium: str) -> Iterator[Browser]:
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS, headless=True)
        yield launched
        launched.close()


@pytest.fixture
def console(db: Database) -> Iterator[ConsoleServer]:
    server = serve(db)
    yield server
    server.stop()


def log_in(browser: Browser, console: ConsoleServer, name: str = "ada") -> Page:
    page = browser.new_context(base_url=console.url, viewport={"width": 1280, "height": 900}).new_page()
    page.set_default_timeout(WAIT_MS)
    page.goto("/")
    expect(page).to_have_url(re.compile(r"/login"))
    page.fill("input[name=username]", name)
    page.fill("input[name=password]", PASSWORDS[name])
    page.click("button[type=submit]")
    expect(page.locator("nav .who")).to_contain_text(name)
    return page


def screenshot(page: Page, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    data = path.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 2000, f"{path} is not a real screenshot"
    return path


def confirm(page: Page) -> None:
    expect(page.locator("h1")).to_contain_text("Confirm")
    page.click("#confirm")


def _state(db: Database, job_id: int) -> str:
    with db.session() as session:
        return str(session.execute(text("SELECT state FROM jobs WHERE id = :id"), {"id": job_id}).scalar())


def test_log_in_wrong_password_then_right_and_overview(browser: Browser, console: ConsoleServer) -> None:
    page = browser.new_context(base_url=console.url).new_page()
    page.goto("/login")
    page.fill("input[name=username]", "ada")
    page.fill("input[name=password]", "wrong")
    page.click("button[type=submit]")
    expect(page.locator("[role=alert]")).to_contain_text("wrong name or password")
    page = log_in(browser, console)
    expect(page.locator("h1")).to_have_text("Overview")
    expect(page.locator("table").first).to_contain_text("default")
    screenshot(page, "overview")


def test_find_failed_job_read_traceback_retry_and_succeed(
    browser: Browser, console: ConsoleServer, db: Database, processes: ProcessFactory
) -> None:
    processes.worker()
    processes.scheduler()
    enqueue_many_now("test.record", [{"key": f"noise-{i}"} for i in range(20)])
    # Fails all of its 5 attempts; one more attempt (the retry) succeeds.
    job = enqueue_now("test.flaky", {"key": "findme-7f3a", "fail_times": 5}).id
    wait_for(lambda: _state(db, job) == "failed", 90, "the flaky job failed for good")

    page = log_in(browser, console)
    page.goto("/jobs")
    page.fill("input[name=text]", "findme-7f3a")
    page.click("#search")
    rows = page.locator("#jobs tbody tr")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("failed")
    rows.first.locator("a").first.click()
    expect(page.locator("#job-state")).to_have_text("failed")
    expect(page.locator("#attempt-5 pre.traceback")).to_contain_text("RuntimeError: flaky failure 5 of 5")
    screenshot(page, "job")
    page.click("#retry")
    confirm(page)
    expect(page.locator(".flash")).to_contain_text("retry done")
    # The page refreshes itself while the job is unfinished.
    expect(page.locator("#job-state")).to_have_text("succeeded", timeout=WAIT_MS)
    expect(page.locator("#attempt-6")).to_contain_text("succeeded")


def test_bulk_cancel_1000_scheduled_jobs(browser: Browser, console: ConsoleServer, db: Database) -> None:
    enqueue_many_now("test.record", [{"key": f"later-{i}"} for i in range(1000)], delay=3600)
    keep = enqueue_now("test.sleep", {"key": "keep", "seconds": 0}, delay=3600).id
    page = log_in(browser, console)
    page.goto("/jobs")
    page.select_option("select[name=state]", "scheduled")
    page.fill("input[name=type]", "test.record")
    page.click("#search")
    expect(page.locator("#jobs tbody tr")).to_have_count(50)
    expect(page.locator("#older")).to_be_visible()
    page.click("#bulk-cancel")
    expect(page.locator("h1")).to_contain_text("cancel 1000 jobs?")
    confirm(page)
    expect(page.locator(".flash")).to_contain_text("cancel: 1000 jobs, 0 skipped", timeout=WAIT_MS)
    with db.session() as session:
        states = dict(session.execute(text("SELECT state, count(*) FROM jobs WHERE type = 'test.record' GROUP BY state")).all())
    assert states == {"cancelled": 1000}
    assert _state(db, keep) == "scheduled"
    page.goto("/audit")
    expect(page.locator("#audit tbody tr").first).to_contain_text("jobs.cancel")
    expect(page.locator("#audit tbody tr").first).to_contain_text("1000")


def test_pause_queue_nothing_starts_then_resume(
    browser: Browser, console: ConsoleServer, db: Database, processes: ProcessFactory
) -> None:
    processes.worker()
    processes.scheduler()
    page = log_in(browser, console)
    page.goto("/queues")
    page.click("#pause-low")
    confirm(page)
    expect(page.locator("#queue-low .queue-state")).to_have_text("paused")
    held = enqueue_now("test.record", {"key": "held"}, queue="low").id
    # A job on another queue enqueued after it runs to the end: the dispatcher has had its
    # rounds, and the paused queue's job must still not have started.
    marker = enqueue_now("test.record", {"key": "marker"}, queue="default").id
    wait_for(lambda: _state(db, marker) == "succeeded", 60, "the job on the running queue ran")
    assert _state(db, held) == "queued"
    page.goto("/queues")
    page.click("#resume-low")
    confirm(page)
    expect(page.locator("#queue-low .queue-state")).to_have_text("running")
    wait_for(lambda: _state(db, held) == "succeeded", 60, "the resumed queue's job ran")


def test_settle_needs_review_message(browser: Browser, console: ConsoleServer, db: Database) -> None:
    user = add_user(db, "reviewed")
    message = add_message(db, user, "hello, did you get this?")
    with db.session() as session:  # what the sender leaves after a crash past the request
        session.execute(text("UPDATE proactive_messages SET state = 'needs_review', send_started_at = now(), "
                             "failure_reason = 'outcome unknown' WHERE id = :id"), {"id": message})
    page = log_in(browser, console)
    page.goto("/review")
    expect(page.locator(f"#message-{message}")).to_contain_text("hello, did you get this?")
    page.click(f"#sent-{message}")
    confirm(page)
    expect(page.locator(".flash")).to_contain_text(f"message {message} settled as sent")
    expect(page.locator(f"#message-{message}")).to_have_count(0)
    with db.session() as session:
        row = session.execute(text("SELECT state, sent_at FROM proactive_messages WHERE id = :id"),
                              {"id": message}).one()
    assert row.state == "sent" and row.sent_at is not None  # so no longer needs_review


def test_viewer_cannot_act(browser: Browser, console: ConsoleServer, db: Database) -> None:
    job = enqueue_now("test.record", {"key": "viewer"}, delay=3600).id
    page = log_in(browser, console, "vic")
    page.goto(f"/jobs/{job}")
    expect(page.locator("#job-state")).to_have_text("scheduled")
    expect(page.locator("#cancel")).to_have_count(0)  # no buttons for a viewer
    token = page.locator("meta[name=csrf-token]").get_attribute("content")
    answer = page.request.post("/actions/jobs/cancel", form={"job_id": str(job), "csrf_token": token or "", "confirmed": "yes"})
    assert answer.status == 403 and "viewer" in answer.text()
    assert _state(db, job) == "scheduled"


def test_post_without_csrf_token_refused(browser: Browser, console: ConsoleServer, db: Database) -> None:
    job = enqueue_now("test.record", {"key": "csrf"}, delay=3600).id
    add_schedule("console.nightly", "test.record", "30 2 * * *", timezone="Europe/Berlin", payload={"key": "n"})
    page = log_in(browser, console)
    page.goto("/schedules")
    expect(page.locator("#schedule-console\\.nightly ol.fires li")).to_have_count(5)
    screenshot(page, "schedules")
    answer = page.request.post("/actions/jobs/cancel", form={"job_id": str(job), "confirmed": "yes"})
    assert answer.status == 403 and "CSRF" in answer.text()
    assert _state(db, job) == "scheduled"
