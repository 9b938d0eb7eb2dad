-- The job store's hand-written statements. Each starts with `-- name: <name>` and a one-line
-- comment saying what it is for. Parameters are `:name`; `:now` may be NULL (database clock)
-- or a time passed in by an injected clock, so tests move time instead of sleeping.

-- name: insert_jobs
-- Bulk enqueue of jobs that share all but payload and limit key, in one statement: the payloads
-- travel as one JSON array (one parameter to parse, not thousands) and the rest as scalars.
-- The due time is :run_at, else :delay after now, else now; a queued job due later is
-- scheduled. Now is the database's clock (or an injected :now), never the enqueuing host's.
WITH timing AS (
    SELECT c.now, coalesce(CAST(:run_at AS timestamptz), c.now + CAST(:delay AS interval), c.now) AS run_at
    FROM (SELECT coalesce(CAST(:now AS timestamptz), now()) AS now) AS c
), batch AS (SELECT CAST(:limit_keys AS text[]) AS keys)
INSERT INTO jobs (type, queue, state, priority, payload, metadata, max_attempts, timeout_seconds,
                  run_at, limit_key, created_at)
SELECT CAST(:type AS text), CAST(:queue AS text),
       CASE WHEN CAST(:state AS text) = 'queued' AND t.run_at > t.now THEN 'scheduled' ELSE CAST(:state AS text) END,
       CAST(:priority AS smallint), p.value,
       CAST(:metadata AS jsonb), CAST(:max_attempts AS integer), CAST(:timeout AS double precision),
       t.run_at, batch.keys[p.n], t.now
FROM jsonb_array_elements(CAST(:payloads AS jsonb)) WITH ORDINALITY AS p(value, n), batch, timing t
ORDER BY p.n
RETURNING id;

-- name: insert_unique_job
-- Enqueue one job with a unique key; returns nothing when another job holds the key. Due time
-- and state as in insert_jobs.
WITH timing AS (
    SELECT c.now, coalesce(CAST(:run_at AS timestamptz), c.now + CAST(:delay AS interval), c.now) AS run_at
    FROM (SELECT coalesce(CAST(:now AS timestamptz), now()) AS now) AS c
)
INSERT INTO jobs (type, queue, state, priority, payload, metadata, max_attempts, timeout_seconds,
                  run_at, limit_key, unique_key, unique_period_seconds, created_at)
SELECT CAST(:type AS text), CAST(:queue AS text),
       CASE WHEN CAST(:state AS text) = 'queued' AND t.run_at > t.now THEN 'scheduled' ELSE CAST(:state AS text) END,
       CAST(:priority AS smallint), CAST(:payload AS jsonb), CAST(:metadata AS jsonb),
       CAST(:max_attempts AS integer), CAST(:timeout AS double precision), t.run_at, CAST(:limit_key AS text),
       CAST(:unique_key AS text), CAST(:unique_period AS double precision), t.now
FROM timing t
ON CONFLICT (unique_key) WHERE unique_key IS NOT NULL AND NOT unique_released
DO NOTHING
RETURNING id;

-- name: find_unique_holder
-- The job holding a unique key.
SELECT id FROM jobs WHERE unique_key = :unique_key AND NOT unique_released;

-- name: release_expired_unique
-- A finished holder whose unique period has passed lets its key go (checked at the next enqueue).
UPDATE jobs SET unique_released = true
WHERE unique_key = :unique_key AND NOT unique_released AND state IN ('succeeded', 'failed', 'cancelled')
  AND finished_at + make_interval(secs => unique_period_seconds) <= coalesce(:now, now())
RETURNING id;

-- name: list_queues
-- Every queue with its settings: the enqueue validation cache and the dispatcher's plan.
SELECT name, paused, dispatch_window, concurrency_limit, rate_limit, rate_period_seconds, retention_seconds
FROM queues ORDER BY name;

-- name: seed_queue
-- Create a queue if missing (idempotent).
INSERT INTO queues (name) VALUES (:name) ON CONFLICT (name) DO NOTHING;

-- name: set_queue_paused
-- Pause or resume a queue; returns the queue when it exists.
UPDATE queues SET paused = :paused, updated_at = coalesce(:now, now()) WHERE name = :name RETURNING name;

-- name: notify_ready
-- Wake the dispatcher (after a resume, a retry, a promotion done outside it).
SELECT pg_notify('jobs_ready', '');

-- name: notify_probe
-- The dispatcher's probe: a token on the wake-up channel, sent the way every notifier sends.
SELECT pg_notify('jobs_ready', :token);

-- name: promote_scheduled
-- Scheduled jobs whose time has come (first runs and retry backoffs) become queued.
UPDATE jobs SET state = 'queued'
WHERE id IN (SELECT id FROM jobs
             WHERE state = 'scheduled' AND run_at <= coalesce(:now, now())
             ORDER BY run_at LIMIT :limit FOR UPDATE SKIP LOCKED);

-- name: lock_queue
-- Take one queue for a dispatch round: its settings, or nothing when it is paused or another
-- dispatcher holds it (so windows and limits are exact with several scheduler replicas).
SELECT name, paused, dispatch_window, concurrency_limit, rate_limit, rate_period_seconds, retention_seconds
FROM queues WHERE name = :queue AND NOT paused FOR UPDATE SKIP LOCKED;

-- name: queue_in_flight
-- One queue's jobs in the broker (dispatched) and running now (two counts, each served by its own
-- partial index): the window's and limits' inputs.
SELECT (SELECT count(*) FROM jobs WHERE queue = :queue AND state = 'dispatched') AS dispatched,
       (SELECT count(*) FROM jobs WHERE queue = :queue AND state = 'running') AS running;

-- name: dispatch_queue
-- Move up to :limit runnable jobs of one queue to dispatched, in exact (priority, run_at, id) order.
UPDATE jobs SET state = 'dispatched', dispatched_at = coalesce(:now, now())
FROM (SELECT id FROM jobs
      WHERE queue = :queue AND state = 'queued' AND run_at <= coalesce(:now, now())
      ORDER BY priority, run_at, id LIMIT :limit FOR UPDATE SKIP LOCKED) AS picked
WHERE jobs.id = picked.id
RETURNING jobs.id, jobs.type, jobs.queue, jobs.priority, jobs.run_at, jobs.attempt, jobs.timeout_seconds;

-- name: fail_unknown_types
-- Jobs inserted (e.g. by plain SQL) with a type no process declares fail at once, with the reason.
UPDATE jobs SET state = 'failed', finished_at = coalesce(:now, now()),
                last_error = 'unknown job type ' || quote_literal(type)
WHERE id = ANY(CAST(:ids AS bigint[])) AND state = 'dispatched';

-- name: redispatch_lost
-- Jobs left dispatched past the timeout (their message was lost): refresh and return them to publish again.
UPDATE jobs SET dispatched_at = coalesce(:now, now())
WHERE id IN (SELECT id FROM jobs
             WHERE state = 'dispatched' AND dispatched_at < coalesce(:now, now()) - make_interval(secs => :after)
             ORDER BY dispatched_at LIMIT :limit FOR UPDATE SKIP LOCKED)
RETURNING id, type, queue, priority, run_at, attempt, timeout_seconds;

-- name: claim_job
-- Compare-and-set dispatched -> running for one job and open its execution, in one round trip.
WITH claimed AS (
    UPDATE jobs SET state = 'running', attempt = attempt + 1, started_at = coalesce(:now, now()),
                    worker_id = :worker_id, progress = NULL
    -- The type must match the task the message named: a message can never run another job.
    WHERE id = :job_id AND state = 'dispatched' AND cancel_requested_at IS NULL AND type = :job_type
    RETURNING id, type, queue, priority, payload, metadata, attempt, max_attempts, timeout_seconds,
              created_at, run_at, dispatched_at, started_at
), execution AS (
    INSERT INTO job_executions (job_id, attempt, state, worker_id, task_id, started_at)
    SELECT id, attempt, 'running', :worker_id, :task_id, started_at FROM claimed
    RETURNING id
)
SELECT claimed.*, execution.id AS execution_id FROM claimed, execution;

-- name: finish_execution
-- Record how an attempt ended, on the job and its execution, in one round trip. A late report
-- from an attempt the rescuer already gave up on still counts while no newer attempt started.
-- A retry or snooze is due :delay after the database's now (or an injected :now).
WITH job AS (
    UPDATE jobs SET state = :job_state,
                    run_at = coalesce(coalesce(CAST(:now AS timestamptz), now()) + CAST(:delay AS interval), run_at),
                    finished_at = CASE WHEN :job_state IN ('succeeded', 'failed', 'cancelled')
                                       THEN coalesce(:now, now()) END,
                    max_attempts = max_attempts + :extra_attempts,
                    last_error = coalesce(:error_message, last_error),
                    cancel_reason = coalesce(cancel_reason, :cancel_reason),  -- an operator's reason wins
                    progress = CASE WHEN :job_state = 'succeeded' THEN 1.0 ELSE progress END,
                    worker_id = NULL
    WHERE id = :job_id AND attempt = :attempt
      AND state IN ('running', 'scheduled', 'queued', 'dispatched')
      -- Only while the execution is open: a finish retried after a lost reply changes nothing.
      AND EXISTS (SELECT 1 FROM job_executions
                  WHERE id = :execution_id AND job_id = :job_id AND state IN ('running', 'lost'))
    RETURNING id, has_dependents, run_at
)
UPDATE job_executions SET state = :execution_state, finished_at = coalesce(:now, now()),
                          error_class = :error_class, error_message = :error_message, traceback = :traceback
WHERE id = :execution_id AND state IN ('running', 'lost')
RETURNING (SELECT count(*) FROM job) AS jobs_updated, coalesce((SELECT bool_or(has_dependents) FROM job), false) AS has_dependents,
          (SELECT max(run_at) FROM job) AS run_at;

-- name: heartbeat_clock
-- Fix the heartbeat transaction's time before the process reads its holdings: every claim
-- started before this time was registered before the holdings are read (see rescue_orphans).
SELECT now();

-- name: heartbeat
-- A worker process says it is alive and which jobs it holds (and registers itself the first time).
INSERT INTO workers (id, hostname, pid, queues, state, started_at, last_heartbeat_at, holding)
VALUES (:id, :hostname, :pid, CAST(:queues AS text[]), :state, coalesce(:now, now()), coalesce(:now, now()),
        CAST(:holding AS bigint[]))
ON CONFLICT (id) DO UPDATE SET last_heartbeat_at = EXCLUDED.last_heartbeat_at, state = EXCLUDED.state,
                               holding = EXCLUDED.holding;

-- name: rescue_orphans
-- Running jobs no live process runs are failed over, at most :limit a round: those on processes
-- that stopped heartbeating (or never registered, or stopped), and those whose live process's
-- heartbeat, written after the claim, does not hold them (the process gave the attempt up).
-- A lost process counts as a crash of the job; at :poison_after crashes the job fails as poison.
-- Otherwise it is retried after the job type's backoff (:types/:bases/:maxes override the
-- :base/:max defaults), or failed when attempts are spent. Executions are marked lost, or
-- timed_out when past their deadline (a hard time limit kills the process the same way).
-- A heartbeat counts as stale only once the server has been up for :stale_after, so workers
-- that lived through a PostgreSQL restart get the time to write one.
WITH policy AS (
    SELECT * FROM unnest(CAST(:types AS text[]), CAST(:bases AS float8[]), CAST(:maxes AS float8[]))
        AS p(type, base, max)
), candidates AS (
    SELECT j.id, j.type, j.attempt, j.max_attempts, j.crashes, j.cancel_requested_at IS NOT NULL AS cancelling,
           (j.timeout_seconds IS NOT NULL
            AND j.started_at + make_interval(secs => j.timeout_seconds) < coalesce(:now, now())) AS timed_out,
           (w.id IS NULL OR w.state = 'stopped'
            OR greatest(w.last_heartbeat_at, pg_postmaster_start_time())
               < coalesce(:now, now()) - make_interval(secs => :stale_after)) AS dead
    FROM jobs j LEFT JOIN workers w ON w.id = j.worker_id
    WHERE j.state = 'running'
      AND ((j.started_at < coalesce(:now, now()) - make_interval(secs => :stale_after)
            AND (w.id IS NULL OR w.state = 'stopped'
                 OR greatest(w.last_heartbeat_at, pg_postmaster_start_time())
                    < coalesce(:now, now()) - make_interval(secs => :stale_after)))
           OR (w.state <> 'stopped' AND w.last_heartbeat_at > j.started_at AND NOT (j.id = ANY(w.holding))))
    ORDER BY j.started_at
    LIMIT :limit
    FOR UPDATE OF j SKIP LOCKED
), orphans AS (
    SELECT c.*, c.crashes + CASE WHEN c.dead THEN 1 ELSE 0 END AS ended,
           c.dead AND c.crashes + 1 >= :poison_after AND NOT c.cancelling AS poison,
           coalesce(p.base, :base) AS base, coalesce(p.max, :max) AS max
    FROM candidates c LEFT JOIN policy p ON p.type = c.type
), jobs_done AS (
    UPDATE jobs SET state = CASE WHEN o.cancelling THEN 'cancelled'
                                 WHEN o.poison OR o.attempt >= o.max_attempts THEN 'failed' ELSE 'scheduled' END,
                    -- base * 2^(attempt-1) capped at max, as worker/finishing.py's backoff_seconds;
                    -- compared in log space so a high attempt never overflows a float.
                    run_at = coalesce(:now, now()) + make_interval(secs => greatest(0,
                        CASE WHEN greatest(0, o.attempt - 1) >= ln(o.max / o.base) / ln(2) THEN o.max
                             ELSE o.base * power(2, greatest(0, o.attempt - 1)) END
                        * (1 + (random() * 2 - 1) * :jitter))),
                    finished_at = CASE WHEN o.cancelling OR o.poison OR o.attempt >= o.max_attempts
                                       THEN coalesce(:now, now()) END,
                    crashes = o.ended,
                    last_error = CASE WHEN o.poison THEN 'poison: ended ' || o.ended || ' worker processes'
                                      WHEN o.timed_out THEN 'timed out (hard limit)'
                                      WHEN o.dead THEN 'worker lost'
                                      ELSE 'attempt abandoned: its end could not be written' END,
                    worker_id = NULL
    FROM orphans o WHERE jobs.id = o.id
    RETURNING jobs.id
)
UPDATE job_executions e
SET state = CASE WHEN o.cancelling THEN 'cancelled' WHEN o.timed_out THEN 'timed_out' ELSE 'lost' END,
    finished_at = coalesce(:now, now()),
    error_class = CASE WHEN o.poison THEN 'Poison' WHEN o.timed_out THEN 'TimeLimitExceeded'
                       WHEN o.dead THEN 'WorkerLost' ELSE 'AttemptAbandoned' END,
    error_message = CASE WHEN o.poison THEN 'poison: ended ' || o.ended || ' worker processes'
                         WHEN o.timed_out THEN 'hard time limit exceeded'
                         WHEN o.dead THEN 'worker process stopped heartbeating'
                         ELSE 'the worker process gave the attempt up: its end could not be written' END
FROM orphans o
WHERE e.job_id = o.id AND e.attempt = o.attempt AND e.state = 'running'
RETURNING e.job_id, e.state, e.error_class;

-- name: mark_workers_stopped
-- Worker processes whose heartbeat is long gone are marked stopped (kept for history until pruned);
-- not before the server has been up for :stale_after (see rescue_orphans).
UPDATE workers SET state = 'stopped'
WHERE state <> 'stopped'
  AND greatest(last_heartbeat_at, pg_postmaster_start_time()) < coalesce(:now, now()) - make_interval(secs => :stale_after);

-- name: get_job
-- One job with every column, for the control API.
SELECT * FROM jobs WHERE id = :job_id;

-- name: get_executions
-- A job's executions, oldest first.
SELECT * FROM job_executions WHERE job_id = :job_id ORDER BY attempt;

-- name: retry_job
-- Put a failed or cancelled job back in the queue with one more attempt allowed.
UPDATE jobs SET state = 'queued', run_at = coalesce(:now, now()), finished_at = NULL,
                max_attempts = greatest(max_attempts, attempt + 1), cancel_reason = NULL,
                cancel_requested_at = NULL
WHERE id = :job_id AND state IN ('failed', 'cancelled')
RETURNING id;

-- name: cancel_waiting_job
-- Cancel a job that has not started (waiting, scheduled, queued, dispatched: a message still in
-- the broker finds it cancelled and is dropped).
UPDATE jobs SET state = 'cancelled', finished_at = coalesce(:now, now()), cancel_reason = :reason
WHERE id = :job_id AND state IN ('waiting', 'scheduled', 'queued', 'dispatched')
RETURNING id;

-- name: request_cancel_running
-- Ask a running job to stop: its worker process sees the request at its next heartbeat; past
-- the grace period the scheduler forces it.
UPDATE jobs SET cancel_requested_at = coalesce(cancel_requested_at, coalesce(:now, now())),
                cancel_reason = coalesce(cancel_reason, :reason)
WHERE id = :job_id AND state = 'running'
RETURNING id;

-- name: cancel_requests_for_worker
-- Running jobs of one worker process that were asked to stop.
SELECT id, attempt FROM jobs
WHERE state = 'running' AND worker_id = :worker_id AND cancel_requested_at IS NOT NULL;

-- name: force_cancel_overdue
-- Running jobs asked to stop longer ago than the grace period end cancelled now, at most :limit
-- a round (oldest request first); returns their task ids so the scheduler can terminate the
-- processes still running them.
WITH picked AS (
    SELECT id FROM jobs
    WHERE state = 'running' AND cancel_requested_at < coalesce(:now, now()) - make_interval(secs => :grace)
    ORDER BY cancel_requested_at LIMIT :limit FOR UPDATE SKIP LOCKED
), overdue AS (
    UPDATE jobs SET state = 'cancelled', finished_at = coalesce(:now, now()), worker_id = NULL
    FROM picked WHERE jobs.id = picked.id
    RETURNING jobs.id, jobs.attempt
)
UPDATE job_executions e SET state = 'cancelled', finished_at = coalesce(:now, now()),
       error_class = 'Cancelled', error_message = 'cancelled: the handler did not stop within the grace period'
FROM overdue o WHERE e.job_id = o.id AND e.attempt = o.attempt AND e.state = 'running'
RETURNING e.job_id, e.task_id;

-- name: job_state
-- The state of one job (for error messages after a refused transition).
SELECT state FROM jobs WHERE id = :job_id;

-- name: set_progress
-- A running attempt's progress (the worker coalesces these to about one a second).
UPDATE jobs SET progress = :progress WHERE id = :job_id AND state = 'running' AND attempt = :attempt;

-- name: insert_job_logs
-- An attempt's log lines, in one statement; none when its first line is already there (the
-- same batch retried after a lost reply).
INSERT INTO job_logs (job_id, attempt, at, level, message)
SELECT :job_id, :attempt, t.at, t.level, t.message
FROM unnest(CAST(:ats AS timestamptz[]), CAST(:levels AS text[]), CAST(:messages AS text[])) AS t(at, level, message)
WHERE NOT EXISTS (SELECT 1 FROM job_logs l WHERE l.job_id = :job_id AND l.attempt = :attempt
                                            AND l.at = (CAST(:ats AS timestamptz[]))[1]);

-- name: execution_state
-- The state of one execution (did a finish whose reply was lost go through?).
SELECT state FROM job_executions WHERE id = :execution_id;

-- name: get_job_logs
-- A job's log lines in order, for the API and CLI.
SELECT at, attempt, level, message FROM job_logs WHERE job_id = :job_id ORDER BY id LIMIT :limit;

-- name: hold_lease
-- Take or renew a leader lease: succeeds (returns the row) when free, expired, or already ours.
INSERT INTO leases (name, holder, expires_at, acquired_at)
VALUES (:name, :holder, coalesce(:now, now()) + make_interval(secs => :ttl), coalesce(:now, now()))
ON CONFLICT (name) DO UPDATE
SET holder = EXCLUDED.holder, expires_at = EXCLUDED.expires_at,
    acquired_at = CASE WHEN leases.holder = EXCLUDED.holder THEN leases.acquired_at ELSE EXCLUDED.acquired_at END
WHERE leases.holder = EXCLUDED.holder OR leases.expires_at < coalesce(:now, now())
RETURNING holder;

-- name: release_lease
-- Give a lease up on a clean stop, so a follower takes over at once.
DELETE FROM leases WHERE name = :name AND holder = :holder;

-- name: reclaim_own_job
-- After a lost reply to a claim: the job is ours if it runs under this worker and task id.
SELECT j.id, j.type, j.queue, j.priority, j.payload, j.metadata, j.attempt, j.max_attempts, j.timeout_seconds,
       j.created_at, j.run_at, j.dispatched_at, j.started_at, e.id AS execution_id
FROM jobs j JOIN job_executions e ON e.job_id = j.id AND e.attempt = j.attempt
WHERE j.id = :job_id AND j.state = 'running' AND j.worker_id = :worker_id
  AND e.task_id IS NOT DISTINCT FROM :task_id AND e.state = 'running';

-- name: queues_with_work
-- The unpaused queues with runnable jobs now (one probe of ix_jobs_runnable each): a dispatch
-- round touches only these.
SELECT q.name FROM queues q
WHERE NOT q.paused AND EXISTS (
    SELECT 1 FROM jobs j WHERE j.queue = q.name AND j.state = 'queued' AND j.run_at <= coalesce(:now, now()))
ORDER BY q.name;

-- name: mark_adopted_dispatched
-- A plain Celery message adopted as a job: the row just inserted `queued` (in this transaction)
-- is dispatched already, by the message in hand.
UPDATE jobs SET state = 'dispatched', dispatched_at = coalesce(:now, now())
WHERE id = :job_id AND state = 'queued';

-- Poison isolation: when a round fails for a reason other than a lost connection, the
-- dispatcher takes its jobs one at a time (ids first: an id always loads), each in a savepoint,
-- and fails alone the job that cannot be moved, loaded or published.

-- name: runnable_job_ids
-- The ids of one queue's runnable jobs in dispatch order, locked for a one-at-a-time round.
SELECT id FROM jobs
WHERE queue = :queue AND state = 'queued' AND run_at <= coalesce(:now, now())
ORDER BY priority, run_at, id LIMIT :limit FOR UPDATE SKIP LOCKED;

-- name: lost_job_ids
-- The ids of jobs left dispatched past the redispatch timeout, locked for a one-at-a-time round.
SELECT id FROM jobs
WHERE state = 'dispatched' AND dispatched_at < coalesce(:now, now()) - make_interval(secs => :after)
ORDER BY dispatched_at LIMIT :limit FOR UPDATE SKIP LOCKED;

-- name: redispatch_job
-- One lost job, refreshed to be published again.
UPDATE jobs SET dispatched_at = coalesce(:now, now())
WHERE id = :job_id AND state = 'dispatched'
RETURNING id, type, queue, priority, run_at, attempt, timeout_seconds;

-- name: due_scheduled_ids
-- The ids of scheduled jobs whose time has come, locked for a one-at-a-time promotion.
SELECT id FROM jobs
WHERE state = 'scheduled' AND run_at <= coalesce(:now, now())
ORDER BY run_at LIMIT :limit FOR UPDATE SKIP LOCKED;

-- name: promote_job
-- One due scheduled job becomes queued.
UPDATE jobs SET state = 'queued' WHERE id = :job_id AND state = 'scheduled';

-- name: fail_undispatchable
-- A job the dispatcher cannot move, load or publish fails alone, with the reason. Values no
-- row may hold any more (an infinite timestamp or timeout from before migration 0004) are
-- cleared on the way, or the update itself would be refused.
UPDATE jobs SET state = 'failed', finished_at = coalesce(:now, now()), last_error = :reason, worker_id = NULL,
                run_at = CASE WHEN isfinite(run_at) THEN run_at ELSE coalesce(:now, now()) END,
                created_at = CASE WHEN isfinite(created_at) THEN created_at ELSE coalesce(:now, now()) END,
                dispatched_at = CASE WHEN isfinite(dispatched_at) THEN dispatched_at END,
                started_at = CASE WHEN isfinite(started_at) THEN started_at END,
                cancel_requested_at = CASE WHEN isfinite(cancel_requested_at) THEN cancel_requested_at END,
                fire_time = CASE WHEN isfinite(fire_time) THEN fire_time END,
                timeout_seconds = CASE WHEN timeout_seconds < 'Infinity'::float8 THEN timeout_seconds END,
                unique_period_seconds = CASE WHEN unique_period_seconds < 'Infinity'::float8
                                             THEN unique_period_seconds ELSE 0 END
WHERE id = :job_id AND state IN ('scheduled', 'queued', 'dispatched')
RETURNING id;

-- Fast recovery from a broker loss (Redis): the dispatcher compares the jobs dispatched for a
-- while with the ids the broker holds, and republishes the ones it no longer holds.

-- name: dispatched_before
-- Jobs dispatched longer ago than :grace seconds (their message should be in the broker by now),
-- oldest first, with their queue (through ix_jobs_dispatched: only dispatched rows).
SELECT id, queue FROM jobs
WHERE state = 'dispatched' AND dispatched_at < coalesce(:now, now()) - make_interval(secs => :grace)
ORDER BY dispatched_at LIMIT :limit;

-- name: redispatch_vanished
-- Jobs whose message the broker no longer holds, still dispatched (never one that runs), refreshed
-- to be published again.
UPDATE jobs SET dispatched_at = coalesce(:now, now())
WHERE id = ANY(CAST(:ids AS bigint[])) AND state = 'dispatched'
  AND dispatched_at < coalesce(:now, now()) - make_interval(secs => :grace)
RETURNING id, type, queue, priority, run_at, attempt, timeout_seconds;
