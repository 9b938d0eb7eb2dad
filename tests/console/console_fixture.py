"""What the console tests share: users with known passwords, an app on the run's database,
and a logged-in HTTP client (Starlette's TestClient: the real ASGI app, in process)."""

from __future__ import annotations

import re
from functools import cache

from starlette.testclient import TestClient

from console.app import create_app
from shared.db import Database
from shared.passwords import hash_password
from shared.settings import Settings, load_settings

PASSWORDS = {"ada": "ada-secret-pw", "vic": "vic-secret-pw"}
SECRET = "s" * 40


@cache
def users_setting() -> str:
    # Cheap hashes: the tests check the scheme, not its cost.
    return (f"ada:admin:{hash_password(PASSWORDS['ada'], n=2**10)},"
            f"vic:viewer:{hash_password(PASSWORDS['vic'], n=2**10)}")


def console_settings(**overrides: object) -> Settings:
    return load_settings(None, console_users=users_setting(), console_secret=SECRET, **overrides)


def csrf_of(html: str) -> str:
    match = re.search(r'name="csrf-token" content="([^"]+)"', html)
    assert match, "no CSRF token on the page"
    return match.group(1)


def logged_in(db: Database, name: str = "ada") -> TestClient:
    client = TestClient(create_app(console_settings(), db), follow_redirects=False)
    token = csrf_of(client.get("/login").text)
    answer = client.post("/login", data={"username": name, "password": PASSWORDS[name], "csrf_token": token})
    assert answer.status_code == 303, answer.text
    return client
