"""The operator console's reads and its audit log (statements in `console.sql`).

Writes to jobs stay in the control API (`shared.control`), except `run_job_now`, which only
moves a scheduled job's due time. Job searches page by id (keyset), and run with custom plans
and a statement time-out, because a payload substring search over millions of rows is the one
query an operator can make slow.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from sqlalchemy import text

from shared.store.rows import Executor
from shared.store.sql import query

SEARCH_TIMEOUT_MS = 10_000


@dataclass(frozen=True)
class JobSearch:
    """An operator's job filters; `None` matches everything. `text` is a substring of the
    payload or metadata (as JSON text), `worker` a prefix of the worker id, times bound
    `created_at` as [since, until)."""

    queue: str | None = None
    state: str | None = None
    type: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    text: str | None = None
    unique_key: str | None = None
    worker: str | None = None

    def params(self) -> dict[str, Any]:
        return {
            "queue": self.queue, "state": self.state, "type": self.type, "since": self.since, "until": self.until,
            "text": f"%{_escape_like(self.text)}%" if self.text else None,
            "unique_key": self.unique_key,
            "worker": f"{_escape_like(self.worker)}%" if self.worker else None,
        }

    def is_empty(self) -> bool:
        return self == JobSearch()

    def with_(self, **changes: Any) -> "JobSearch":
        return replace(self, **changes)


def _escape_like(value: str) -> str:
    return value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _search_mode(db: Executor) -> None:
    # Custom plans: a generic plan would keep every `:x IS NULL OR ...` branch and lose the index.
    db.execute(text("SET LOCAL plan_cache_mode = force_custom_plan"))
    db.execute(text(f"SET LOCAL statement_timeout = {SEARCH_TIMEOUT_MS}"))


def find_jobs(db: Executor, search: JobSearch, before: int | None = None, limit: int = 50) -> list[dict[str, Any]]:
    """One page, newest first; the next page is `before=` the last row's id."""
    _search_mode(db)
    params = dict(search.params(), before=before, limit=limit)
    return [dict(row) for row in db.execute(query("console_find_jobs"), params).mappings().all()]


def find_job_ids(db: Executor, search: JobSearch, before: int | None, limit: int) -> list[int]:
    _search_mode(db)
    params = dict(search.params(), before=before, limit=limit)
    return [int(row[0]) for row in db.execute(query("console_find_job_ids"), params).all()]


def count_jobs(db: Executor, search: JobSearch, cap: int) -> int:
    _search_mode(db)
    return int(db.execute(query("console_count_jobs"), dict(search.params(), cap=cap)).scalar_one())


def run_job_now(db: Executor, job_id: int, now: datetime | None = None) -> bool:
    return db.execute(query("console_run_job_now"), {"job_id": job_id, "now": now}).first() is not None


def job_parents(db: Executor, job_id: int) -> list[dict[str, Any]]:
    return [dict(r) for r in db.execute(query("console_job_parents"), {"job_id": job_id}).mappings().all()]


def job_children(db: Executor, job_id: int) -> list[dict[str, Any]]:
    return [dict(r) for r in db.execute(query("console_job_children"), {"job_id": job_id}).mappings().all()]


def queue_throughput(db: Executor, seconds: int, step_seconds: int, now: datetime | None = None) -> list[dict[str, Any]]:
    params = {"seconds": seconds, "step_seconds": step_seconds, "now": now}
    return [dict(r) for r in db.execute(query("console_queue_throughput"), params).mappings().all()]


def type_failures(db: Executor, seconds: int, limit: int = 10, now: datetime | None = None) -> list[dict[str, Any]]:
    params = {"seconds": seconds, "limit": limit, "now": now}
    return [dict(r) for r in db.execute(query("console_type_failures"), params).mappings().all()]


def live_workers(db: Executor, stale_after_seconds: float, now: datetime | None = None) -> list[dict[str, Any]]:
    params = {"stale_after": stale_after_seconds, "now": now}
    return [dict(r) for r in db.execute(query("console_live_workers"), params).mappings().all()]


def _rows(db: Executor, name: str, limit: int) -> list[dict[str, Any]]:
    return [dict(r) for r in db.execute(query(name), {"limit": limit}).mappings().all()]


def proxies(db: Executor, limit: int = 500) -> list[dict[str, Any]]:
    return _rows(db, "console_proxies", limit)


def proxy_checks(db: Executor, limit: int = 50) -> list[dict[str, Any]]:
    return _rows(db, "console_proxy_checks", limit)


def posts(db: Executor, limit: int = 50) -> list[dict[str, Any]]:
    return _rows(db, "console_posts", limit)


def publications(db: Executor, limit: int = 50) -> list[dict[str, Any]]:
    return _rows(db, "console_publications", limit)


def messages(db: Executor, limit: int = 50) -> list[dict[str, Any]]:
    return _rows(db, "console_messages", limit)


def review_messages(db: Executor, limit: int = 200) -> list[dict[str, Any]]:
    return _rows(db, "console_review_messages", limit)


def review_publications(db: Executor, limit: int = 200) -> list[dict[str, Any]]:
    return _rows(db, "console_review_publications", limit)


def add_audit(
    db: Executor, *, username: str, role: str, action: str, target: str, count: int, detail: dict[str, Any] | None = None
) -> int:
    params = {
        "username": username, "role": role, "action": action, "target": target, "count": count,
        "detail": json.dumps(detail or {}, default=str),
    }
    return int(db.execute(query("console_audit_insert"), params).scalar_one())


def audit_page(db: Executor, before: int | None = None, limit: int = 100) -> list[dict[str, Any]]:
    rows = db.execute(query("console_audit_page"), {"before": before, "limit": limit}).mappings().all()
    return [dict(r) for r in rows]
