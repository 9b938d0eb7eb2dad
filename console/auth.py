"""Who is logged in, what they may do, and the CSRF check.

Users come from JOBS_CONSOLE_USERS (`name:role:hash`); a login puts the name and role in the
signed session cookie. Every POST carries the session's CSRF token as a form field (a cookie
alone proves nothing: the browser sends it with a forged cross-site form too). Actions need
the admin role; a viewer gets 403.
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass
from typing import Awaitable, Callable, Mapping

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response

from shared.passwords import verify_password

ADMIN, VIEWER = "admin", "viewer"
CSRF_FIELD = "csrf_token"


@dataclass(frozen=True)
class User:
    name: str
    role: str

    @property
    def is_admin(self) -> bool:
        return self.role == ADMIN


def authenticate(users: Mapping[str, tuple[str, str]], name: str, password: str) -> User | None:
    entry = users.get(name)
    if entry is None:
        # Spend the same time as a real check, so a wrong name is not told apart from a wrong password.
        verify_password(password, _DUMMY_HASH)
        return None
    role, hashed = entry
    return User(name, role) if verify_password(password, hashed) else None


def _dummy_hash() -> str:
    from shared.passwords import hash_password

    return hash_password(secrets.token_urlsafe(16))


_DUMMY_HASH = _dummy_hash()


def csrf_token(request: Request) -> str:
    token = request.session.get("csrf")
    if not token:
        token = request.session["csrf"] = secrets.token_urlsafe(32)
    return str(token)


def csrf_ok(request: Request, form: FormData) -> bool:
    expected = request.session.get("csrf")
    given = form.get(CSRF_FIELD)
    return bool(expected) and isinstance(given, str) and hmac.compare_digest(given, str(expected))


def session_user(request: Request, users: Mapping[str, tuple[str, str]]) -> User | None:
    name, role = request.session.get("user"), request.session.get("role")
    # A user removed from the settings (or whose role changed) loses the session at once.
    if not name or users.get(name, (None,))[0] != role:
        return None
    return User(str(name), str(role))


def log_in(request: Request, user: User) -> None:
    request.session.clear()  # a fresh session (and CSRF token) at login: no fixation
    request.session.update({"user": user.name, "role": user.role, "csrf": secrets.token_urlsafe(32)})


Handler = Callable[[Request, User, FormData | None], Response]


def guarded(handler: Handler, *, action: bool = False) -> Callable[[Request], Awaitable[Response]]:
    """An endpoint that needs a login; on POST the CSRF token, and for actions the admin role.
    The handler (blocking database work) runs in the thread pool."""

    async def endpoint(request: Request) -> Response:
        user = session_user(request, request.app.state.users)
        if user is None:
            if request.method != "GET":
                return PlainTextResponse("login required", status_code=403)
            return RedirectResponse(f"/login?next={request.url.path}", status_code=303)
        form = None
        if request.method == "POST":
            form = await request.form()
            if not csrf_ok(request, form):
                return PlainTextResponse("CSRF token missing or wrong", status_code=403)
            if action and not user.is_admin:
                return PlainTextResponse("forbidden: the viewer role cannot act", status_code=403)
        return await run_in_threadpool(handler, request, user, form)

    return endpoint
