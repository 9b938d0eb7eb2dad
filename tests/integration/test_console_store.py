"""The console's store queries (filters, keyset pages, bulk batches), its HTTP guards (login,
CSRF, roles), the audit rows of its actions, and the jobs query's plan at 1M finished rows."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from sqlalchemy import text

from shared.db import Database
from shared.enqueue import enqueue_many_now, enqueue_now
from shared.store import console as store
from shared.store.console import JobSearch
from tests.console.console_fixture import csrf_of, logged_in
from tests.history import fill_finished_jobs, history_inserts


def _finish(db: Database, ids: list[int], state: str, worker: str | None = None) -> None:
    with db.session() as session:
        session.execute(text("UPDATE jobs SET state = :state, finished_at = now(), worker_id = :worker WHERE id = ANY(:ids)"),
                        {"state": state, "ids": ids, "worker": worker})


def _all_pages(db: Database, search: JobSearch, size: int) -> list[int]:
    seen: list[int] = []
    before = None
    while True:
        with db.session() as session:
            page = store.find_jobs(session, search, before, size)
        if not page:
            return seen
        seen += [row["id"] for row in page]
        before = page[-1]["id"]


def test_filters_and_keyset_pages(db: Database) -> None:
    records = enqueue_many_now("test.record", [{"key": f"rec-{i}"} for i in range(45)])
    failed = enqueue_many_now("test.fail", [{"key": f"needle-{i}_x"} for i in range(12)], queue="low")
    _finish(db, failed, "failed", worker="host-a:1")
    unique = enqueue_now("test.unique", {"key": "only"}).id
    everything = sorted(records + failed + [unique], reverse=True)

    for size in (1, 7, 50, 100):  # every page size yields every job once, newest first
        assert _all_pages(db, JobSearch(), size) == everything
    assert _all_pages(db, JobSearch(state="failed"), 5) == sorted(failed, reverse=True)
    assert _all_pages(db, JobSearch(queue="low"), 5) == sorted(failed, reverse=True)
    assert _all_pages(db, JobSearch(type="test.record"), 10) == sorted(records, reverse=True)
    assert _all_pages(db, JobSearch(text="needle-1"), 3) == sorted([failed[1], failed[10], failed[11]], reverse=True)
    # LIKE wildcards in the text are literal: "_" matches only an underscore.
    assert _all_pages(db, JobSearch(text="needle-3_x"), 3) == [failed[3]]
    assert _all_pages(db, JobSearch(text="needle%"), 3) == []
    assert _all_pages(db, JobSearch(worker="host-a"), 50) == sorted(failed, reverse=True)
    assert _all_pages(db, JobSearch(unique_key="test.unique:only") , 5) in ([unique], [])
    future = datetime.now(timezone.utc) + timedelta(hours=1)
    assert _all_pages(db, JobSearch(since=future), 5) == []
    assert _all_pages(db, JobSearch(until=future, state="failed", queue="low"), 50) == sorted(failed, reverse=True)
    with db.session() as session:
        assert store.count_jobs(session, JobSearch(type="test.record"), 10) == 10  # capped
        assert store.find_job_ids(session, JobSearch(state="failed"), failed[5], 3) == [failed[4], failed[3], failed[2]]


def test_login_csrf_and_roles(db: Database) -> None:
    job = enqueue_now("test.record", {"key": "guarded"}, delay=3600).id
    anonymous = logged_in(db).__class__(logged_in(db).app, follow_redirects=False)
    assert anonymous.get("/jobs").status_code == 303  # to the login page
    assert anonymous.post("/actions/jobs/cancel", data={"job_id": job}).status_code == 403

    admin = logged_in(db, "ada")
    page = admin.get(f"/jobs/{job}")
    assert page.status_code == 200 and "test.record" in page.text
    token = csrf_of(page.text)
    # No token, a wrong token: refused, nothing done.
    assert admin.post("/actions/jobs/cancel", data={"job_id": job, "confirmed": "yes"}).status_code == 403
    assert admin.post("/actions/jobs/cancel", data={"job_id": job, "confirmed": "yes", "csrf_token": "x" * 43}).status_code == 403
    viewer = logged_in(db, "vic")
    viewer_token = csrf_of(viewer.get("/jobs").text)
    refused = viewer.post("/actions/jobs/cancel", data={"job_id": job, "confirmed": "yes", "csrf_token": viewer_token})
    assert refused.status_code == 403
    with db.session() as session:
        assert session.execute(text("SELECT state FROM jobs WHERE id = :id"), {"id": job}).scalar() == "scheduled"
        assert session.execute(text("SELECT count(*) FROM console_audit")).scalar() == 0

    # The first post asks for confirmation; the second acts and is audited.
    asked = admin.post("/actions/jobs/cancel", data={"job_id": job, "csrf_token": token})
    assert asked.status_code == 200 and "Confirm" in asked.text
    done = admin.post("/actions/jobs/cancel", data={"job_id": job, "csrf_token": token, "confirmed": "yes"})
    assert done.status_code == 303
    with db.session() as session:
        assert session.execute(text("SELECT state FROM jobs WHERE id = :id"), {"id": job}).scalar() == "cancelled"
        audit = session.execute(text("SELECT username, role, action, target, count FROM console_audit")).all()
    assert [tuple(a) for a in audit] == [("ada", "admin", "job.cancel", f"job {job}", 1)]
    assert "job.cancel" in admin.get("/audit").text


def test_bulk_action_audits_count_and_filters(db: Database) -> None:
    ids = enqueue_many_now("test.record", [{"key": f"bulk-{i}"} for i in range(30)], delay=3600)
    enqueue_many_now("test.record", [{"key": f"other-{i}"} for i in range(5)], delay=3600)
    admin = logged_in(db)
    token = csrf_of(admin.get("/jobs?text=bulk-").text)
    form = {"csrf_token": token, "scope": "selection", "text": "bulk-", "state": "scheduled"}
    asked = admin.post("/actions/jobs/cancel", data=form)
    assert "cancel 30 jobs?" in asked.text
    assert admin.post("/actions/jobs/cancel", data=dict(form, confirmed="yes")).status_code == 303
    with db.session() as session:
        states = dict(session.execute(text("SELECT state, count(*) FROM jobs GROUP BY state")).all())
        detail = session.execute(text("SELECT count, detail FROM console_audit WHERE action = 'jobs.cancel'")).one()
    assert states == {"cancelled": 30, "scheduled": 5}
    assert detail.count == 30 and detail.detail["filters"] == {"state": "scheduled", "text": "bulk-"}
    assert len(ids) == 30
    # A bulk action with no filter at all is refused.
    assert admin.post("/actions/jobs/cancel", data={"csrf_token": token, "scope": "selection"}).status_code == 400


def test_pages_render_and_never_show_secrets(db: Database) -> None:
    from tests.workload_data import add_user, connect

    user = add_user(db, "secretive")
    connect(db, user, 42, "123456:AAHtokenNeverShown_0123456789abcdefghij")
    admin = logged_in(db)
    for path in ("/", "/?range=1h", "/?range=14d", "/jobs", "/queues", "/schedules", "/workloads", "/review", "/audit"):
        page = admin.get(path)
        assert page.status_code == 200, (path, page.text[:500])
        assert "tokenNeverShown" not in page.text
    assert admin.get("/jobs/999999999").status_code == 404


def test_jobs_query_uses_an_index_at_1m_finished_rows(db: Database) -> None:
    with db.session() as session, history_inserts(session):
        fill_finished_jobs(session, 1_000_000)
    with db.session() as session:
        session.execute(text("ANALYZE jobs"))
    searches = [JobSearch(), JobSearch(state="failed"), JobSearch(queue="low"), JobSearch(type="bench.noop")]
    with db.session() as session:
        for search in searches:
            store.find_jobs(session, search, None, 1)  # sets the session's plan mode, as the page does
            params = dict(search.params(), before=None, limit=51)
            plan = "\n".join(session.execute(text("EXPLAIN " + str(store.query("console_find_jobs"))), params).scalars())
            assert "Seq Scan" not in plan, (search, plan)
            assert "Index" in plan, (search, plan)
