-- Reads for operators: the scheduler's Prometheus gauges and the `jobctl jobs | queues | stats`
-- commands. Each starts with `-- name: <name>` and a one-line comment saying what it is for.
-- `:now` may be NULL (the database's clock) or an injected time. Every statement that counts
-- jobs names one state (or the terminal ones), so a partial index serves it and the millions of
-- finished rows are never scanned.

-- name: queue_overview
-- Every queue with its active jobs by state, its oldest due waiting jobs and its latest dispatch.
SELECT q.name, q.paused, q.dispatch_window, q.concurrency_limit, q.rate_limit, q.rate_period_seconds,
       q.retention_seconds,
       (SELECT count(*) FROM jobs j WHERE j.queue = q.name AND j.state = 'waiting') AS waiting,
       (SELECT count(*) FROM jobs j WHERE j.queue = q.name AND j.state = 'scheduled') AS scheduled,
       (SELECT count(*) FROM jobs j WHERE j.queue = q.name AND j.state = 'queued') AS queued,
       (SELECT count(*) FROM jobs j WHERE j.queue = q.name AND j.state = 'dispatched') AS dispatched,
       (SELECT count(*) FROM jobs j WHERE j.queue = q.name AND j.state = 'running') AS running,
       (SELECT min(j.run_at) FROM jobs j
        WHERE j.queue = q.name AND j.state = 'queued' AND j.run_at <= coalesce(:now, now())) AS oldest_queued_at,
       (SELECT min(j.run_at) FROM jobs j WHERE j.queue = q.name AND j.state = 'dispatched') AS oldest_dispatched_at,
       -- One max per state, so each partial index serves its own (an IN over both states is
       -- planned as a sequential scan of every job once millions have finished).
       greatest((SELECT max(j.dispatched_at) FROM jobs j WHERE j.queue = q.name AND j.state = 'dispatched'),
                (SELECT max(j.dispatched_at) FROM jobs j WHERE j.queue = q.name AND j.state = 'running'))
         AS last_dispatched_at,
       coalesce(:now, now()) AS now
FROM queues q ORDER BY q.name;

-- name: oldest_overdue_scheduled
-- The due time of the oldest scheduled job whose time has passed (the dispatcher promotes these every round).
SELECT min(run_at) FROM jobs WHERE state = 'scheduled' AND run_at <= coalesce(:now, now());

-- name: count_live_workers
-- Worker processes online with a heartbeat fresher than :stale_after seconds.
SELECT count(*) FROM workers
WHERE state = 'online' AND last_heartbeat_at >= coalesce(:now, now()) - make_interval(secs => :stale_after);

-- name: newest_job_id
-- The highest job id so far: where a reader of new rows (the cron lateness histogram) starts.
SELECT coalesce(max(id), 0) FROM jobs;

-- name: cron_fires_after
-- Jobs made by schedules with an id above :after, oldest first, with their lateness (enqueued minus due).
SELECT id, extract(epoch FROM created_at - fire_time)::float8 AS lateness_seconds
FROM jobs
WHERE id > :after AND schedule_id IS NOT NULL AND fire_time IS NOT NULL
ORDER BY id LIMIT :limit;

-- name: find_jobs
-- Jobs matching an operator's filters (a NULL filter matches everything), newest first.
SELECT id, type, queue, state, priority, attempt, max_attempts, created_at, run_at, started_at, finished_at,
       worker_id, last_error
FROM jobs
WHERE (CAST(:queues AS text[]) IS NULL OR queue = ANY(CAST(:queues AS text[])))
  AND (CAST(:types AS text[]) IS NULL OR type = ANY(CAST(:types AS text[])))
  AND (CAST(:states AS text[]) IS NULL OR state = ANY(CAST(:states AS text[])))
  AND (CAST(:since AS timestamptz) IS NULL OR created_at >= CAST(:since AS timestamptz))
  AND (CAST(:until AS timestamptz) IS NULL OR created_at < CAST(:until AS timestamptz))
ORDER BY id DESC LIMIT :limit;

-- name: finished_since
-- Jobs of the given queues that ended in the last :minutes, per queue and final state (ix_jobs_finished).
SELECT queue, state, count(*) AS jobs
FROM jobs
WHERE state IN ('succeeded', 'failed', 'cancelled') AND queue = ANY(CAST(:queues AS text[]))
  AND finished_at >= coalesce(:now, now()) - make_interval(mins => :minutes)
GROUP BY queue, state;

-- name: failures_since
-- Jobs of the given queues that failed for good in the last :minutes, per queue and type, with the latest error.
SELECT queue, type, count(*) AS failed, max(finished_at) AS last_failed_at,
       (array_agg(last_error ORDER BY finished_at DESC))[1] AS last_error
FROM jobs
WHERE state = 'failed' AND queue = ANY(CAST(:queues AS text[]))
  AND finished_at >= coalesce(:now, now()) - make_interval(mins => :minutes)
GROUP BY queue, type
ORDER BY failed DESC, queue, type LIMIT :limit;
