"""Adopting tasks sent with plain Celery (`app.send_task("proxies.check", kwargs={...})` or
`task.delay(...)`): the message becomes a job row with an execution, under the same claim,
retry and failure handling as an enqueued job.

The Celery task id is the job's unique key, so a redelivered message finds the job it already
made instead of making a second one. The row is inserted `queued` (the only way any row enters
`jobs`: the database's insert guard allows no exception) and moved to `dispatched` in the same
transaction, before anyone else can see it: the message in hand is its dispatch.
"""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

from shared.db import Database
from shared.enqueue import queue_names
from shared.jobtypes.registry import JobType
from shared.models.states import JobState
from shared.store import jobs as job_store
from shared.settings import get_settings
from shared.store.rows import NewJob

ADOPTED_KEY_PREFIX = "celery-task:"
# Long enough that a message redelivered days later still finds its job (pruning frees it).
ADOPTED_UNIQUE_SECONDS = 7 * 24 * 3600.0


def adopt(
    database: Database, job_type: JobType[Any], task_id: str, routing_key: str | None,
    args: tuple[Any, ...], kwargs: dict[str, Any],
) -> int:
    """Record a plain Celery message as a dispatched job; returns the job id to run."""
    # Positional arguments cannot be matched to payload fields: they are kept, so validation
    # refuses the payload and the job ends discarded, with the reason on record.
    payload = dict(kwargs, __args__=list(args)) if args else dict(kwargs)
    row = NewJob(
        type=job_type.name, queue=job_type.queue, state=JobState.QUEUED, priority=job_type.priority,
        payload_json=json.dumps(payload, default=str), metadata_json=json.dumps({"adopted_from": "celery"}),
        max_attempts=job_type.max_attempts or get_settings().default_max_attempts, timeout_seconds=job_type.timeout_seconds, run_at=None,
        unique_key=ADOPTED_KEY_PREFIX + task_id, unique_period_seconds=ADOPTED_UNIQUE_SECONDS,
    )
    with database.session() as session:
        queue = routing_key if routing_key and queue_names.known(session, routing_key) else job_type.queue
        job_id, inserted = job_store.insert_unique_job(session, replace(row, queue=queue))
        if inserted:
            job_store.mark_adopted_dispatched(session, job_id)
    return job_id
