"""The console's actions: every one asks for confirmation first (the form posts again with
`confirmed=yes`), goes through the platform's own API (`shared.control`, `shared.schedules`,
`shared.workloads`) and is written to `console_audit` with who, what and how many.

Bulk actions walk the filtered selection by id in batches (keyset, never OFFSET), at most
BULK_MAX jobs per action; each job goes through the same control function as a single one, so
cancelling a job also cancels its dependents and a running job is asked to stop.
"""

from __future__ import annotations

from typing import Any, Callable

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from console.auth import CSRF_FIELD, User
from console.filters import parse_search, search_fields, search_query
from console.pages import render
from shared import control, schedules
from shared.db import Database
from shared.errors import InvalidTransition, PlatformError, ValidationError
from shared.store import console as store
from shared.workloads import messages as message_service
from shared.workloads import posts as post_service

BULK_MAX = 100_000
BULK_BATCH = 500


def _confirm(request: Request, user: User, form: FormData, title: str, detail: str) -> Response | None:
    """The confirmation page on the first post; None once confirmed."""
    if form.get("confirmed") == "yes":
        return None
    hidden = {k: str(v) for k, v in form.items() if k not in (CSRF_FIELD, "confirmed")}
    return render(request, user, "confirm.html", title=title, detail=detail, hidden=hidden, action=request.url.path)


def _audit(database: Database, user: User, action: str, target: str, count: int, **detail: Any) -> None:
    with database.session() as session:
        store.add_audit(session, username=user.name, role=user.role, action=action, target=target, count=count,
                        detail=detail)


def _done(request: Request, message: str, to: str) -> Response:
    request.session["flash"] = message
    return RedirectResponse(to, status_code=303)


def _failed(request: Request, user: User, exc: PlatformError) -> Response:
    return render(request, user, "error.html", status_code=409 if isinstance(exc, InvalidTransition) else 400,
                  message=str(exc))


def _db(request: Request) -> Database:
    return request.app.state.database  # type: ignore[no-any-return]


JOB_ACTIONS: dict[str, Callable[[int, Database], object]] = {
    "retry": lambda job_id, db: control.retry_job(job_id, database=db),
    "cancel": lambda job_id, db: control.cancel_job(job_id, "cancelled in the console", database=db),
    "run-now": lambda job_id, db: _run_now(job_id, db),
}


def _run_now(job_id: int, database: Database) -> None:
    with database.session() as session:
        if not store.run_job_now(session, job_id):
            raise InvalidTransition(f"job {job_id} is not scheduled for later", job_id=job_id)
        from shared.store import queues as queue_store

        queue_store.notify_ready(session)


def job_action(request: Request, user: User, form: FormData | None) -> Response:
    assert form is not None
    verb = request.path_params["verb"]
    if verb not in JOB_ACTIONS:
        return render(request, user, "error.html", status_code=404, message=f"no action {verb!r}")
    if form.get("scope") == "selection":
        return _bulk(request, user, form, verb)
    try:
        job_id = int(str(form.get("job_id")))
    except ValueError:
        return render(request, user, "error.html", status_code=400, message="job_id must be a number")
    asked = _confirm(request, user, form, f"{verb} job {job_id}?", f"This will {verb} job {job_id}.")
    if asked is not None:
        return asked
    try:
        JOB_ACTIONS[verb](job_id, _db(request))
    except PlatformError as exc:
        return _failed(request, user, exc)
    _audit(_db(request), user, f"job.{verb}", f"job {job_id}", 1)
    return _done(request, f"job {job_id}: {verb} done", f"/jobs/{job_id}")


def _bulk(request: Request, user: User, form: FormData, verb: str) -> Response:
    try:
        search = parse_search({k: str(v) for k, v in form.items()})
    except ValidationError as exc:
        return _failed(request, user, exc)
    if search.is_empty():
        return render(request, user, "error.html", status_code=400,
                      message="a bulk action needs at least one filter (it would act on every job)")
    database = _db(request)
    if form.get("confirmed") != "yes":
        with database.session() as session:
            matching = store.count_jobs(session, search, BULK_MAX + 1)
        shown = f"more than {BULK_MAX} (only the newest {BULK_MAX} are acted on)" if matching > BULK_MAX else str(matching)
        filters = ", ".join(f"{k}={v}" for k, v in search_fields(search).items())
        return _confirm(request, user, form, f"{verb} {shown} jobs?",
                        f"This will {verb} every job matching {filters}: {shown} now. Jobs whose state does not allow it are skipped.")
    done = skipped = 0
    before: int | None = None
    while done + skipped < BULK_MAX:
        with database.session() as session:
            ids = store.find_job_ids(session, search, before, min(BULK_BATCH, BULK_MAX - done - skipped))
        if not ids:
            break
        for job_id in ids:
            try:
                JOB_ACTIONS[verb](job_id, database)
                done += 1
            except PlatformError:
                skipped += 1  # finished or changed state meanwhile
        before = ids[-1]
    _audit(database, user, f"jobs.{verb}", "selection", done, filters=search_fields(search), skipped=skipped)
    return _done(request, f"{verb}: {done} jobs, {skipped} skipped", f"/jobs?{search_query(search)}")


def queue_action(request: Request, user: User, form: FormData | None) -> Response:
    assert form is not None
    verb, name = request.path_params["verb"], str(form.get("queue") or "")
    database = _db(request)
    detail: dict[str, Any] = {}
    try:
        if verb == "limits":
            detail = _limits(form)
            description = f"set the limits of queue {name} to {detail}"
        elif verb in ("pause", "resume"):
            description = f"{verb} queue {name}"
        else:
            return render(request, user, "error.html", status_code=404, message=f"no action {verb!r}")
        asked = _confirm(request, user, form, f"{description}?", f"This will {description}.")
        if asked is not None:
            return asked
        if verb == "pause":
            control.pause_queue(name, database=database)
        elif verb == "resume":
            control.resume_queue(name, database=database)
        else:
            control.set_queue_limits(name, database=database, **detail)
    except PlatformError as exc:
        return _failed(request, user, exc)
    _audit(database, user, f"queue.{verb}", f"queue {name}", 1, **detail)
    return _done(request, f"queue {name}: {verb} done", "/queues")


def _limits(form: FormData) -> dict[str, Any]:
    def number(name: str) -> int | None:
        value = str(form.get(name) or "").strip()
        if not value:
            return None
        try:
            return int(value)
        except ValueError:
            raise ValidationError(f"{name} must be a whole number or empty", field=name) from None

    rate, period = number("rate_limit"), str(form.get("rate_period_seconds") or "").strip()
    if (rate is None) != (not period):
        raise ValidationError("give both the rate limit and its period, or neither", field="rate_limit")
    try:
        pair = (rate, float(period)) if rate is not None else None
    except ValueError:
        raise ValidationError("rate_period_seconds must be a number", field="rate_period_seconds") from None
    return {"concurrency": number("concurrency_limit"), "rate": pair, "window": number("dispatch_window")}


def schedule_action(request: Request, user: User, form: FormData | None) -> Response:
    assert form is not None
    verb, name = request.path_params["verb"], str(form.get("name") or "")
    database = _db(request)
    cron, zone = str(form.get("cron") or "").strip(), str(form.get("timezone") or "").strip() or None
    descriptions = {
        "enable": f"enable schedule {name}", "disable": f"disable schedule {name}",
        "run-now": f"run schedule {name} once now", "retime": f"re-time schedule {name} to {cron!r} in {zone}",
    }
    if verb not in descriptions:
        return render(request, user, "error.html", status_code=404, message=f"no action {verb!r}")
    asked = _confirm(request, user, form, f"{descriptions[verb]}?", f"This will {descriptions[verb]}.")
    if asked is not None:
        return asked
    detail: dict[str, Any] = {}
    try:
        if verb == "enable":
            schedules.enable_schedule(name, database=database)
        elif verb == "disable":
            schedules.disable_schedule(name, database=database)
        elif verb == "run-now":
            detail["job_id"] = schedules.run_schedule_now(name, database=database)
        else:
            schedules.set_cron(name, cron, zone, database=database)
            detail = {"cron": cron, "timezone": zone}
    except PlatformError as exc:
        return _failed(request, user, exc)
    _audit(database, user, f"schedule.{verb}", f"schedule {name}", 1, **detail)
    return _done(request, f"schedule {name}: {verb} done", "/schedules")


def settle_message(request: Request, user: User, form: FormData | None) -> Response:
    assert form is not None
    verdict, message_id = str(form.get("verdict") or ""), _id(form, "message_id")
    if verdict not in ("sent", "failed") or message_id is None:
        return render(request, user, "error.html", status_code=400, message="give a message id and sent or failed")
    meaning = "the user got it" if verdict == "sent" else "it was not delivered; it is not sent again"
    asked = _confirm(request, user, form, f"settle message {message_id} as {verdict}?", f"Record that {meaning}.")
    if asked is not None:
        return asked
    try:
        with _db(request).session() as session:
            message_service.resolve_message(session, message_id, verdict)
    except PlatformError as exc:
        return _failed(request, user, exc)
    _audit(_db(request), user, f"message.settle.{verdict}", f"message {message_id}", 1)
    return _done(request, f"message {message_id} settled as {verdict}", "/review")


def settle_publication(request: Request, user: User, form: FormData | None) -> Response:
    assert form is not None
    publication_id = _id(form, "publication_id")
    platform_post_id = str(form.get("platform_post_id") or "").strip() or None
    reason = str(form.get("failed_reason") or "").strip() or None
    if publication_id is None or (platform_post_id is None) == (reason is None):
        return render(request, user, "error.html", status_code=400,
                      message="give the platform's post id (it was published) or a reason (it was not), not both")
    verdict = f"published as {platform_post_id}" if platform_post_id else f"not published: {reason}"
    asked = _confirm(request, user, form, f"settle publication {publication_id}?", f"Record: {verdict}.")
    if asked is not None:
        return asked
    try:
        with _db(request).session() as session:
            post_service.resolve_publication(session, publication_id, platform_post_id=platform_post_id,
                                             failed_reason=reason)
    except PlatformError as exc:
        return _failed(request, user, exc)
    _audit(_db(request), user, "publication.settle", f"publication {publication_id}", 1, verdict=verdict)
    return _done(request, f"publication {publication_id}: {verdict}", "/review")


def _id(form: FormData, name: str) -> int | None:
    try:
        return int(str(form.get(name)))
    except ValueError:
        return None
