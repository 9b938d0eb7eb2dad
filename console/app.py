"""The console's ASGI app: routes, sessions, templates.

Starlette + Jinja2, served by uvicorn: a small async framework whose pages are rendered on the
server, so the console needs no front-end build and no third-party script or stylesheet.
"""

from __future__ import annotations

import secrets
from pathlib import Path
from urllib.parse import urlsplit

from starlette.applications import Starlette
from starlette.datastructures import FormData
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from console import actions, pages
from console.auth import authenticate, csrf_ok, guarded, log_in, session_user
from shared.db import Database, get_database
from shared.errors import ConfigurationError
from shared.settings import Settings, console_users, get_settings

HERE = Path(__file__).parent
SESSION_SECONDS = 12 * 3600


def create_app(settings: Settings | None = None, database: Database | None = None) -> Starlette:
    settings = settings or get_settings()
    secret = settings.console_secret.get_secret_value() if settings.console_secret else None
    if secret is None:
        if settings.env == "production":
            raise ConfigurationError("JOBS_CONSOLE_SECRET (32+ characters) is required when JOBS_ENV is production")
        secret = secrets.token_urlsafe(32)  # development: sessions last as long as the process
    templates = Jinja2Templates(directory=str(HERE / "templates"))
    templates.env.filters["age"] = pages.age
    routes = [
        Route("/login", login, methods=["GET", "POST"]),
        Route("/logout", logout, methods=["POST"]),
        Route("/", guarded(pages.overview)),
        Route("/jobs", guarded(pages.jobs)),
        Route("/jobs/{job_id:int}", guarded(pages.job)),
        Route("/queues", guarded(pages.queues)),
        Route("/schedules", guarded(pages.schedules)),
        Route("/workloads", guarded(pages.workloads)),
        Route("/review", guarded(pages.review)),
        Route("/audit", guarded(pages.audit)),
        Route("/actions/jobs/{verb}", guarded(actions.job_action, action=True), methods=["POST"]),
        Route("/actions/queues/{verb}", guarded(actions.queue_action, action=True), methods=["POST"]),
        Route("/actions/schedules/{verb}", guarded(actions.schedule_action, action=True), methods=["POST"]),
        Route("/actions/review/message", guarded(actions.settle_message, action=True), methods=["POST"]),
        Route("/actions/review/publication", guarded(actions.settle_publication, action=True), methods=["POST"]),
        Mount("/static", StaticFiles(directory=str(HERE / "static")), name="static"),
    ]
    middleware = [Middleware(
        SessionMiddleware, secret_key=secret, session_cookie="jobs_console", max_age=SESSION_SECONDS,
        same_site="strict", https_only=False,
    )]
    app = Starlette(routes=routes, middleware=middleware)
    app.state.settings = settings
    app.state.database = database or get_database(settings)
    app.state.users = console_users(settings)
    app.state.templates = templates
    return app


async def login(request: Request) -> Response:
    users = request.app.state.users
    target = _safe_next(request.query_params.get("next"))
    if request.method == "GET":
        if session_user(request, users) is not None:
            return RedirectResponse(target, status_code=303)
        return pages.render(request, None, "login.html", no_users=not users, next=target)
    form: FormData = await request.form()
    if not csrf_ok(request, form):
        return PlainTextResponse("CSRF token missing or wrong", status_code=403)
    from starlette.concurrency import run_in_threadpool

    user = await run_in_threadpool(authenticate, users, str(form.get("username") or ""), str(form.get("password") or ""))
    if user is None:
        return pages.render(request, None, "login.html", status_code=401, no_users=not users, next=target,
                            error="wrong name or password")
    log_in(request, user)
    return RedirectResponse(target, status_code=303)


async def logout(request: Request) -> Response:
    form = await request.form()
    if not csrf_ok(request, form):
        return PlainTextResponse("CSRF token missing or wrong", status_code=403)
    request.session.clear()
    return RedirectResponse("/login", status_code=303)


def _safe_next(value: str | None) -> str:
    # Only a path of this site: an absolute URL here would make the login an open redirect.
    if not value or not value.startswith("/") or value.startswith("//") or urlsplit(value).netloc:
        return "/"
    return value
