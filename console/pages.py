"""The pages that read: overview, jobs, a job, queues, schedules, workloads, review, audit.

Each handler runs in the thread pool (blocking SQLAlchemy) and renders one template. Nothing
here writes; the forms on these pages post to `console.actions`.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import Response

from console.auth import User
from console.charts import Series, stacked_bars
from console.filters import parse_search, search_fields, search_query
from shared import control
from shared.crontime import next_fire, parse
from shared.errors import JobNotFound, ScheduleInvalid, ValidationError
from shared.models.states import JobState, TERMINAL_JOB_STATES
from shared.schedules import list_schedules
from shared.store import console as store
from shared.store import operations
from shared.store import queues as queue_store

PAGE_SIZE = 50
RANGES = {  # name -> (seconds shown, bucket width, tick format)
    "1h": (3600, 60, "%H:%M"),
    "24h": (86400, 3600, "%d %H:00"),
    "14d": (14 * 86400, 86400, "%m-%d"),
}


def render(request: Request, user: User | None, template: str, status_code: int = 200, **context: Any) -> Response:
    from console.auth import csrf_token

    context.update(user=user, csrf=csrf_token(request), flash=request.session.pop("flash", None),
                   path=request.url.path)
    return request.app.state.templates.TemplateResponse(request, template, context, status_code=status_code)


def _db(request: Request):  # type: ignore[no-untyped-def]
    return request.app.state.database


def overview(request: Request, user: User, _form: FormData | None) -> Response:
    chosen = request.query_params.get("range", "24h")
    seconds, step, tick = RANGES.get(chosen, RANGES["24h"])
    settings = request.app.state.settings
    with _db(request).session() as session:
        queues = operations.queue_overview(session)
        finished = operations.finished_since(session, [q.name for q in queues], 24 * 60)
        throughput = store.queue_throughput(session, seconds, step)
        failing = store.type_failures(session, seconds)
        workers = store.live_workers(session, settings.worker_stale_after_seconds)
    times = [row["at"] for row in throughput]
    chart_done = stacked_bars(times, [
        Series("succeeded", [r["succeeded"] for r in throughput], "ok"),
        Series("failed", [r["failed"] for r in throughput], "bad"),
    ], f"Jobs finished per {_step_name(step)}", tick)
    chart_failures = stacked_bars(times, [
        Series("failed", [r["failed"] for r in throughput], "bad"),
        Series("retried", [r["retried"] for r in throughput], "warn"),
    ], f"Failures and retries per {_step_name(step)}", tick)
    rows = [{
        "queue": q, "counts": q.counts(), "oldest": q.oldest_waiting_seconds(),
        "finished": {s: finished.get((q.name, str(s)), 0) for s in TERMINAL_JOB_STATES},
    } for q in queues]
    return render(request, user, "overview.html", refresh=10, rows=rows, chart_done=chart_done,
                  chart_failures=chart_failures, failing=failing, workers=workers, range=chosen, ranges=list(RANGES),
                  active_states=[s for s in JobState if s not in TERMINAL_JOB_STATES], terminal=TERMINAL_JOB_STATES)


def _step_name(step: int) -> str:
    return {60: "minute", 3600: "hour", 86400: "day"}[step]


def jobs(request: Request, user: User, _form: FormData | None) -> Response:
    error = None
    try:
        search = parse_search(request.query_params)
    except ValidationError as exc:
        search, error = store.JobSearch(), str(exc)
    before = _int(request.query_params.get("before"))
    with _db(request).session() as session:
        rows = store.find_jobs(session, search, before, PAGE_SIZE + 1)
        queues = [q.name for q in queue_store.list_queues(session)]
    more = len(rows) > PAGE_SIZE
    rows = rows[:PAGE_SIZE]
    older = search_query(search, before=rows[-1]["id"]) if more and rows else None
    return render(request, user, "jobs.html", rows=rows, fields=search_fields(search), older=older,
                  newest=search_query(search) if before else None, error=error, states=list(JobState),
                  queues=queues, filtered=not search.is_empty())


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value else None
    except ValueError:
        return None


def job(request: Request, user: User, _form: FormData | None) -> Response:
    job_id = int(request.path_params["job_id"])
    database = _db(request)
    try:
        view = control.get_job(job_id, database=database)
        logs = control.job_logs(job_id, database=database, limit=500)
    except JobNotFound:
        return render(request, user, "error.html", status_code=404, message=f"no job with id {job_id}")
    with database.session() as session:
        parents, children = store.job_parents(session, job_id), store.job_children(session, job_id)
    finished = view.state in set(TERMINAL_JOB_STATES)
    return render(request, user, "job.html", job=view.job, executions=view.executions, logs=logs, parents=parents,
                  children=children, flower=_flower_url(request), refresh=None if finished else 3,
                  can_retry=view.state in ("failed", "cancelled"), can_cancel=not finished,
                  can_run_now=view.state == "scheduled")


def _flower_url(request: Request) -> str:
    settings = request.app.state.settings
    return (settings.console_flower_url or f"http://127.0.0.1:{settings.flower_port}").rstrip("/")


def queues(request: Request, user: User, _form: FormData | None) -> Response:
    with _db(request).session() as session:
        rows = operations.queue_overview(session)
    return render(request, user, "queues.html", refresh=10, queues=rows)


def schedules(request: Request, user: User, _form: FormData | None) -> Response:
    rows = []
    now = datetime.now(timezone.utc)
    for row in list_schedules(database=_db(request)):
        fires: list[datetime] = []
        try:
            spec = parse(row.cron, row.timezone)
            at = now
            for _ in range(5):
                at = next_fire(spec, at)
                fires.append(at)
        except ScheduleInvalid:
            pass
        rows.append({"row": row, "fires": fires, "zone": spec.zone if fires else None})
    return render(request, user, "schedules.html", refresh=30, schedules=rows)


def workloads(request: Request, user: User, _form: FormData | None) -> Response:
    with _db(request).session() as session:
        data = {
            "proxies": store.proxies(session), "checks": store.proxy_checks(session), "posts": store.posts(session),
            "publications": store.publications(session), "messages": store.messages(session),
        }
    return render(request, user, "workloads.html", refresh=30, **data)


def review(request: Request, user: User, _form: FormData | None) -> Response:
    with _db(request).session() as session:
        messages, publications = store.review_messages(session), store.review_publications(session)
    return render(request, user, "review.html", messages=messages, publications=publications)


def audit(request: Request, user: User, _form: FormData | None) -> Response:
    before = _int(request.query_params.get("before"))
    with _db(request).session() as session:
        rows = store.audit_page(session, before, 101)
    older = rows[99]["id"] if len(rows) > 100 else None
    return render(request, user, "audit.html", rows=rows[:100], older=older)


def age(seconds: float) -> str:
    return str(timedelta(seconds=int(seconds))) if seconds else "-"
