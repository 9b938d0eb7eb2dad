"""Queue rows and worker heartbeats."""

from __future__ import annotations

from datetime import datetime
from typing import Iterable, Sequence

from shared.store.rows import Executor, QueueRow
from shared.store.sql import query


def list_queues(db: Executor) -> list[QueueRow]:
    return [QueueRow(**row._asdict()) for row in db.execute(query("list_queues")).all()]


def seed_queues(db: Executor, names: Iterable[str]) -> None:
    for name in names:
        db.execute(query("seed_queue"), {"name": name})


def set_queue_paused(db: Executor, name: str, paused: bool, now: datetime | None = None) -> bool:
    found = db.execute(query("set_queue_paused"), {"name": name, "paused": paused, "now": now}).first()
    if found is not None and not paused:
        notify_ready(db)
    return found is not None


def notify_ready(db: Executor) -> None:
    db.execute(query("notify_ready"))


def notify_probe(db: Executor, token: str) -> None:
    """A token on the dispatcher's channel: it checks that NOTIFY reaches its listener."""
    db.execute(query("notify_probe"), {"token": token})


def heartbeat_clock(db: Executor) -> None:
    """Fix the heartbeat transaction's time; call before reading the holdings to report."""
    db.execute(query("heartbeat_clock"))


def heartbeat(
    db: Executor, worker_id: str, hostname: str, pid: int, queues: list[str], state: str = "online",
    now: datetime | None = None, holding: Sequence[int] | None = None,
) -> None:
    """`holding`: the job ids the process holds, read after `heartbeat_clock` in the same
    transaction; None for a process that does not report them."""
    db.execute(
        query("heartbeat"),
        {"id": worker_id, "hostname": hostname, "pid": pid, "queues": queues, "state": state, "now": now,
         "holding": None if holding is None else list(holding)},
    )


def mark_workers_stopped(db: Executor, stale_after_seconds: float, now: datetime | None = None) -> int:
    return db.execute(query("mark_workers_stopped"), {"stale_after": stale_after_seconds, "now": now}).rowcount or 0
