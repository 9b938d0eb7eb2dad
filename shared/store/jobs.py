"""Job rows: insert, dispatch, claim, finish, rescue. Every write to `jobs` is in this package."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from itertools import groupby
from typing import Sequence

from shared.store.rows import ClaimedJob, DispatchedJob, Executor, Finish, FinishWritten, NewJob, QueueRow
from shared.store.sql import query


def insert_jobs(db: Executor, jobs: Sequence[NewJob], now: datetime | None = None) -> list[int]:
    """Insert many jobs, one statement per run of jobs that share all but payload and limit key
    (enqueue_many makes exactly one such run); ids in the order given."""
    ids: list[int] = []
    for _, run in groupby(jobs, key=_shared_fields):
        batch = list(run)
        first = batch[0]
        keys = [j.limit_key for j in batch]
        params = {
            "type": first.type, "queue": first.queue, "state": first.state, "priority": first.priority,
            "metadata": first.metadata_json, "max_attempts": first.max_attempts, "timeout": first.timeout_seconds,
            "run_at": first.run_at, "delay": first.delay, "now": now,
            "payloads": "[" + ",".join(j.payload_json for j in batch) + "]",
            "limit_keys": keys if any(k is not None for k in keys) else None,
        }
        # Identities are drawn in insertion order, which follows the payloads' order.
        ids.extend(sorted(db.execute(query("insert_jobs"), params).scalars()))
    return ids


def _shared_fields(job: NewJob) -> tuple[object, ...]:
    return (job.type, job.queue, job.state, job.priority, job.metadata_json, job.max_attempts,
            job.timeout_seconds, job.run_at, job.delay)


def insert_unique_job(db: Executor, job: NewJob, now: datetime | None = None) -> tuple[int, bool]:
    """Insert a job holding a unique key, or find the job that holds it.

    Returns (id, inserted). The partial unique index decides. A finished holder whose unique
    period has passed is released and the insert tried again; the loop also covers a holder
    released between our refused insert and our look-up.
    """
    params = {
        "type": job.type, "queue": job.queue, "state": job.state, "priority": job.priority,
        "payload": job.payload_json, "metadata": job.metadata_json, "max_attempts": job.max_attempts,
        "timeout": job.timeout_seconds, "run_at": job.run_at, "delay": job.delay, "limit_key": job.limit_key,
        "unique_key": job.unique_key, "unique_period": job.unique_period_seconds, "now": now,
    }
    key = {"unique_key": job.unique_key, "now": now}
    for _ in range(5):
        inserted = db.execute(query("insert_unique_job"), params).scalar()
        if inserted is not None:
            return inserted, True
        if db.execute(query("release_expired_unique"), key).first() is not None:
            continue
        holder = db.execute(query("find_unique_holder"), key).scalar()
        if holder is not None:
            return holder, False
    raise RuntimeError(f"unique key {job.unique_key!r} kept changing hands; try again")


def mark_adopted_dispatched(db: Executor, job_id: int, now: datetime | None = None) -> None:
    """An adopted plain-Celery job, inserted queued in this transaction, is dispatched already."""
    db.execute(query("mark_adopted_dispatched"), {"job_id": job_id, "now": now})


def promote_scheduled(db: Executor, limit: int, now: datetime | None = None) -> int:
    return db.execute(query("promote_scheduled"), {"limit": limit, "now": now}).rowcount or 0


def queues_with_work(db: Executor, now: datetime | None = None) -> list[str]:
    return list(db.execute(query("queues_with_work"), {"now": now}).scalars())


def lock_queue(db: Executor, queue: str) -> QueueRow | None:
    """Hold one queue for this transaction's dispatch round; None when paused or held elsewhere."""
    row = db.execute(query("lock_queue"), {"queue": queue}).first()
    return QueueRow(**row._asdict()) if row is not None else None


def queue_in_flight(db: Executor, queue: str) -> tuple[int, int]:
    """(dispatched, running) of one queue."""
    row = db.execute(query("queue_in_flight"), {"queue": queue}).one()
    return row.dispatched, row.running


def dispatch_queue(db: Executor, queue: str, limit: int, now: datetime | None = None) -> list[DispatchedJob]:
    rows = db.execute(query("dispatch_queue"), {"queue": queue, "limit": limit, "now": now}).all()
    jobs = [DispatchedJob(**row._asdict()) for row in rows]
    jobs.sort(key=lambda j: (j.priority, j.run_at, j.id))
    return jobs


def fail_unknown_types(db: Executor, job_ids: Sequence[int], now: datetime | None = None) -> None:
    if job_ids:
        db.execute(query("fail_unknown_types"), {"ids": list(job_ids), "now": now})


def redispatch_lost(db: Executor, after_seconds: float, limit: int, now: datetime | None = None) -> list[DispatchedJob]:
    rows = db.execute(query("redispatch_lost"), {"after": after_seconds, "limit": limit, "now": now}).all()
    return [DispatchedJob(**row._asdict()) for row in rows]


def dispatched_before(
    db: Executor, grace_seconds: float, limit: int, now: datetime | None = None
) -> list[tuple[int, str]]:
    """(id, queue) of jobs dispatched longer ago than the grace period, oldest first."""
    params = {"grace": grace_seconds, "limit": limit, "now": now}
    return [(r.id, r.queue) for r in db.execute(query("dispatched_before"), params).all()]


def redispatch_vanished(
    db: Executor, job_ids: Sequence[int], grace_seconds: float, now: datetime | None = None
) -> list[DispatchedJob]:
    """Refresh, to publish again, those of these jobs still dispatched past the grace period."""
    params = {"ids": list(job_ids), "grace": grace_seconds, "now": now}
    return [DispatchedJob(**row._asdict()) for row in db.execute(query("redispatch_vanished"), params).all()]


def runnable_job_ids(db: Executor, queue: str, limit: int, now: datetime | None = None) -> list[int]:
    return list(db.execute(query("runnable_job_ids"), {"queue": queue, "limit": limit, "now": now}).scalars())


def lost_job_ids(db: Executor, after_seconds: float, limit: int, now: datetime | None = None) -> list[int]:
    return list(db.execute(query("lost_job_ids"), {"after": after_seconds, "limit": limit, "now": now}).scalars())


def redispatch_job(db: Executor, job_id: int, now: datetime | None = None) -> DispatchedJob | None:
    row = db.execute(query("redispatch_job"), {"job_id": job_id, "now": now}).first()
    return DispatchedJob(**row._asdict()) if row is not None else None


def due_scheduled_ids(db: Executor, limit: int, now: datetime | None = None) -> list[int]:
    return list(db.execute(query("due_scheduled_ids"), {"limit": limit, "now": now}).scalars())


def promote_job(db: Executor, job_id: int) -> None:
    db.execute(query("promote_job"), {"job_id": job_id})


def fail_undispatchable(db: Executor, job_id: int, reason: str, now: datetime | None = None) -> bool:
    """Fail one job the dispatcher cannot handle (not yet running), with the reason."""
    params = {"job_id": job_id, "reason": reason, "now": now}
    return db.execute(query("fail_undispatchable"), params).first() is not None


def claim_job(
    db: Executor, job_id: int, job_type: str, worker_id: str, task_id: str | None, now: datetime | None = None
) -> ClaimedJob | None:
    params = {"job_id": job_id, "job_type": job_type, "worker_id": worker_id, "task_id": task_id, "now": now}
    row = db.execute(query("claim_job"), params).first()
    return ClaimedJob(**row._asdict()) if row is not None else None


def reclaim_own_job(db: Executor, job_id: int, worker_id: str, task_id: str | None) -> ClaimedJob | None:
    """The job this worker claimed, when the reply to its claim was lost."""
    row = db.execute(query("reclaim_own_job"), {"job_id": job_id, "worker_id": worker_id, "task_id": task_id}).first()
    return ClaimedJob(**row._asdict()) if row is not None else None


def finish_execution(
    db: Executor, job_id: int, attempt: int, execution_id: int, finish: Finish, now: datetime | None = None
) -> FinishWritten:
    """Record an attempt's end; not recorded when the job moved on (a newer attempt owns it)."""
    params = dict(_finish_params(finish), job_id=job_id, attempt=attempt, execution_id=execution_id, now=now)
    row = db.execute(query("finish_execution"), params).first()
    if row is None:
        return FinishWritten(recorded=False)
    return FinishWritten(bool(row.jobs_updated), bool(row.has_dependents), row.run_at)


def _finish_params(finish: Finish) -> dict[str, object]:
    return {
        "job_state": finish.job_state, "execution_state": finish.execution_state, "delay": finish.delay,
        "extra_attempts": finish.extra_attempts, "error_class": finish.error_class,
        "error_message": finish.error_message, "traceback": finish.traceback, "cancel_reason": finish.cancel_reason,
    }


def request_cancel_running(db: Executor, job_id: int, reason: str, now: datetime | None = None) -> bool:
    return db.execute(query("request_cancel_running"), {"job_id": job_id, "reason": reason, "now": now}).first() is not None


def cancel_requests_for_worker(db: Executor, worker_id: str) -> list[tuple[int, int]]:
    """(job id, attempt) of this worker process's running jobs that were asked to stop."""
    return [(r.id, r.attempt) for r in db.execute(query("cancel_requests_for_worker"), {"worker_id": worker_id}).all()]


def force_cancel_overdue(
    db: Executor, grace_seconds: float, limit: int, now: datetime | None = None
) -> list[tuple[int, str | None]]:
    """End at most `limit` jobs that ignored a cancel request for the grace period; (job id,
    task id) pairs."""
    rows = db.execute(query("force_cancel_overdue"), {"grace": grace_seconds, "limit": limit, "now": now}).all()
    return [(r.job_id, r.task_id) for r in rows]


@dataclass(frozen=True)
class RescuePolicy:
    """How the rescuer retries: the default backoff, per-type overrides (type -> (base, max)),
    the jitter, and the crash count that makes a job poison."""

    backoff_base: float
    backoff_max: float
    jitter: float
    poison_after: int
    per_type: dict[str, tuple[float, float]] = field(default_factory=dict)


@dataclass(frozen=True)
class Rescued:
    job_id: int
    execution_state: str
    error_class: str


def rescue_orphans(
    db: Executor, stale_after_seconds: float, policy: RescuePolicy, limit: int, now: datetime | None = None
) -> list[Rescued]:
    """Fail over at most `limit` running jobs that no live process runs (see the statement)."""
    types = sorted(policy.per_type)
    rows = db.execute(query("rescue_orphans"), {
        "stale_after": stale_after_seconds, "limit": limit, "now": now,
        "base": policy.backoff_base, "max": policy.backoff_max, "jitter": policy.jitter,
        "poison_after": policy.poison_after, "types": types,
        "bases": [policy.per_type[t][0] for t in types], "maxes": [policy.per_type[t][1] for t in types],
    }).all()
    return [Rescued(row.job_id, row.state, row.error_class) for row in rows]


def execution_state(db: Executor, execution_id: int) -> str | None:
    return db.execute(query("execution_state"), {"execution_id": execution_id}).scalar()


def set_progress(db: Executor, job_id: int, attempt: int, progress: float) -> None:
    db.execute(query("set_progress"), {"job_id": job_id, "attempt": attempt, "progress": progress})


def insert_job_logs(
    db: Executor, job_id: int, attempt: int, lines: Sequence[tuple[datetime, str, str]]
) -> None:
    if lines:
        db.execute(
            query("insert_job_logs"),
            {
                "job_id": job_id, "attempt": attempt, "ats": [l[0] for l in lines],
                "levels": [l[1] for l in lines], "messages": [l[2] for l in lines],
            },
        )
