-- Dispatch under limits: concurrency per queue and per key, rates per queue and per key.

-- name: runnable_candidates
-- The next page of one queue's runnable backlog in exact order (after a keyset position, for
-- the pages past jobs whose key is at its limit), locked for this dispatch round.
SELECT id, limit_key, priority, run_at FROM jobs
WHERE queue = :queue AND state = 'queued' AND run_at <= coalesce(:now, now())
  AND (priority, run_at, id) > (:after_priority, CAST(:after_run_at AS timestamptz), :after_id)
ORDER BY priority, run_at, id LIMIT :limit FOR UPDATE SKIP LOCKED;

-- name: mark_dispatched
-- The chosen candidates move to dispatched.
UPDATE jobs SET state = 'dispatched', dispatched_at = coalesce(:now, now())
WHERE id = ANY(CAST(:ids AS bigint[])) AND state = 'queued'
RETURNING id, type, queue, priority, run_at, attempt, timeout_seconds;

-- name: keys_in_flight
-- Per limit key, its jobs dispatched or running (across all queues and hosts).
SELECT limit_key, count(*) AS n FROM jobs
WHERE limit_key = ANY(CAST(:keys AS text[])) AND state IN ('dispatched', 'running')
GROUP BY limit_key;

-- name: ensure_rate_windows
-- Create missing rate windows (idempotent), so they can be locked.
INSERT INTO rate_windows (key) SELECT unnest(CAST(:keys AS text[])) ON CONFLICT (key) DO NOTHING;

-- name: lock_rate_windows
-- The recent start times of rate-limited scopes, locked for this round, with the round's time.
SELECT key, recent, coalesce(:now, now()) AS now FROM rate_windows
WHERE key = ANY(CAST(:keys AS text[])) ORDER BY key FOR UPDATE;

-- name: save_rate_window
-- A scope's start times after this round (only the last N matter).
UPDATE rate_windows SET recent = CAST(:recent AS timestamptz[]) WHERE key = :key;

-- name: set_queue_limits
-- Change a queue's limits (NULL lifts one); returns the queue when it exists.
UPDATE queues SET concurrency_limit = :concurrency, rate_limit = :rate_limit,
                  rate_period_seconds = :rate_period, dispatch_window = coalesce(:window, dispatch_window),
                  updated_at = coalesce(:now, now())
WHERE name = :name RETURNING name;

-- name: job_candidate
-- One runnable job as a candidate, for a one-at-a-time round under limits (poison isolation).
SELECT id, limit_key, priority, run_at FROM jobs WHERE id = :job_id AND state = 'queued';
