-- Recurring schedules and the jobs their fires make. Same format as queries.sql: each statement
-- starts with `-- name: <name>` and a one-line comment; `:now` is NULL (database clock) or the
-- injected time. Fires use clock_timestamp(), not the transaction's start, so a job's
-- created_at is the moment it was really enqueued and lateness is measured honestly.

-- name: insert_schedule
-- Create a schedule made through the API; returns nothing when the name is taken.
INSERT INTO schedules (name, cron, timezone, job_type, payload, queue, priority, misfire_policy, catch_up_limit,
                       jitter_seconds, enabled, source, next_fire_at, created_at, updated_at)
VALUES (:name, :cron, :timezone, :job_type, CAST(:payload AS jsonb), :queue, :priority, :misfire_policy,
        :catch_up_limit, :jitter_seconds, :enabled, :source, CAST(:next_fire_at AS timestamptz),
        coalesce(CAST(:now AS timestamptz), now()), coalesce(CAST(:now AS timestamptz), now()))
ON CONFLICT (name) DO NOTHING
RETURNING *;

-- name: sync_code_schedule
-- Create or refresh a schedule declared in code. Its definition follows the code; `enabled` (an
-- operator's choice) and the next fire time survive restarts unless the cron or zone changed.
-- Returns nothing when the row is unchanged or was made through the API (left alone).
INSERT INTO schedules (name, cron, timezone, job_type, payload, queue, priority, misfire_policy, catch_up_limit,
                       jitter_seconds, enabled, source, next_fire_at, created_at, updated_at)
VALUES (:name, :cron, :timezone, :job_type, CAST(:payload AS jsonb), :queue, :priority, :misfire_policy,
        :catch_up_limit, :jitter_seconds, :enabled, 'code', CAST(:next_fire_at AS timestamptz),
        coalesce(CAST(:now AS timestamptz), now()), coalesce(CAST(:now AS timestamptz), now()))
ON CONFLICT (name) DO UPDATE
SET cron = EXCLUDED.cron, timezone = EXCLUDED.timezone, job_type = EXCLUDED.job_type, payload = EXCLUDED.payload,
    queue = EXCLUDED.queue, priority = EXCLUDED.priority, misfire_policy = EXCLUDED.misfire_policy,
    catch_up_limit = EXCLUDED.catch_up_limit, jitter_seconds = EXCLUDED.jitter_seconds,
    next_fire_at = CASE WHEN schedules.cron <> EXCLUDED.cron OR schedules.timezone <> EXCLUDED.timezone
                             OR schedules.next_fire_at IS NULL
                        THEN EXCLUDED.next_fire_at ELSE schedules.next_fire_at END,
    updated_at = EXCLUDED.updated_at
WHERE schedules.source = 'code'
  AND (schedules.cron, schedules.timezone, schedules.job_type, schedules.payload, schedules.queue, schedules.priority,
       schedules.misfire_policy, schedules.catch_up_limit, schedules.jitter_seconds)
      IS DISTINCT FROM
      (EXCLUDED.cron, EXCLUDED.timezone, EXCLUDED.job_type, EXCLUDED.payload, EXCLUDED.queue, EXCLUDED.priority,
       EXCLUDED.misfire_policy, EXCLUDED.catch_up_limit, EXCLUDED.jitter_seconds)
RETURNING id, (xmax = 0) AS created;

-- name: get_schedule
-- One schedule by name, for the API and CLI.
SELECT * FROM schedules WHERE name = :name;

-- name: list_schedules
-- Every schedule, by name, for the API and CLI.
SELECT * FROM schedules ORDER BY name;

-- name: set_schedule_cron
-- Change a schedule's cron and zone; the caller computed the next fire time in the new zone.
UPDATE schedules SET cron = :cron, timezone = :timezone, next_fire_at = CAST(:next_fire_at AS timestamptz),
                     updated_at = coalesce(CAST(:now AS timestamptz), now())
WHERE name = :name
RETURNING *;

-- name: set_schedule_enabled
-- Enable (from the next future fire: the disabled stretch is not a misfire) or disable a schedule.
UPDATE schedules SET enabled = :enabled,
                     next_fire_at = CASE WHEN :enabled AND NOT enabled THEN CAST(:next_fire_at AS timestamptz)
                                         ELSE next_fire_at END,
                     updated_at = coalesce(CAST(:now AS timestamptz), now())
WHERE name = :name
RETURNING *;

-- name: delete_schedule
-- Delete a schedule; the jobs it made stay, their schedule_id set to NULL by the foreign key.
DELETE FROM schedules WHERE name = :name RETURNING id;

-- name: lock_due_schedules
-- The cron round: enabled schedules whose next fire is due, each held by one replica
-- (SKIP LOCKED), with the round's single idea of now.
WITH clock AS MATERIALIZED (SELECT coalesce(CAST(:now AS timestamptz), clock_timestamp()) AS now)
SELECT s.*, clock.now AS round_now
FROM schedules s, clock
WHERE s.enabled AND s.next_fire_at <= clock.now
ORDER BY s.next_fire_at
LIMIT :limit
FOR UPDATE OF s SKIP LOCKED;

-- name: insert_schedule_jobs
-- One job per fire time; a fire that already has its job (a repeated round, a second replica)
-- inserts nothing: the unique index on (schedule_id, fire_time) decides, not the caller.
INSERT INTO jobs (type, queue, state, priority, payload, metadata, max_attempts, timeout_seconds, run_at,
                  limit_key, schedule_id, fire_time, created_at)
SELECT :type, :queue, f.state, CAST(:priority AS smallint), CAST(:payload AS jsonb), f.metadata,
       CAST(:max_attempts AS integer), CAST(:timeout AS double precision), f.run_at, CAST(:limit_key AS text),
       CAST(:schedule_id AS bigint), f.fire_time, coalesce(CAST(:now AS timestamptz), clock_timestamp())
FROM unnest(CAST(:fire_times AS timestamptz[]), CAST(:run_ats AS timestamptz[]), CAST(:states AS text[]),
            CAST(:metadatas AS jsonb[])) AS f(fire_time, run_at, state, metadata)
ON CONFLICT (schedule_id, fire_time) WHERE schedule_id IS NOT NULL DO NOTHING
RETURNING id, fire_time;

-- name: insert_manual_run
-- "Run now": a job linked to its schedule but with no fire time, so it is never mistaken for
-- (nor blocks) a cron fire.
INSERT INTO jobs (type, queue, state, priority, payload, metadata, max_attempts, timeout_seconds, run_at,
                  limit_key, schedule_id, created_at)
VALUES (:type, :queue, 'queued', CAST(:priority AS smallint), CAST(:payload AS jsonb), CAST(:metadata AS jsonb),
        CAST(:max_attempts AS integer), CAST(:timeout AS double precision),
        coalesce(CAST(:now AS timestamptz), now()), CAST(:limit_key AS text), CAST(:schedule_id AS bigint),
        coalesce(CAST(:now AS timestamptz), now()))
RETURNING id;

-- name: advance_schedule
-- After a round: the next fire time, and the latest fire that made a job.
UPDATE schedules SET next_fire_at = CAST(:next_fire_at AS timestamptz),
                     last_fire_at = coalesce(CAST(:last_fire_at AS timestamptz), last_fire_at)
WHERE id = :id;

-- name: seconds_until_next_fire
-- How long the cron service may sleep: until the earliest enabled schedule is due.
SELECT extract(epoch FROM min(next_fire_at) - coalesce(CAST(:now AS timestamptz), clock_timestamp()))
FROM schedules WHERE enabled;

-- name: cron_lateness
-- Lateness of cron fires (enqueued minus due, in ms) over a window of fire times, optionally
-- for one schedule: the benchmark's and the docs' figure.
SELECT count(*) AS fires,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY lateness_ms) AS p50_ms,
       percentile_cont(0.99) WITHIN GROUP (ORDER BY lateness_ms) AS p99_ms,
       max(lateness_ms) AS max_ms
FROM (SELECT extract(epoch FROM j.created_at - j.fire_time) * 1000 AS lateness_ms
      FROM jobs j JOIN schedules s ON s.id = j.schedule_id
      WHERE j.fire_time IS NOT NULL
        AND (CAST(:schedule AS text) IS NULL OR s.name = CAST(:schedule AS text))
        AND (CAST(:since AS timestamptz) IS NULL OR j.fire_time >= CAST(:since AS timestamptz))
        AND (CAST(:until AS timestamptz) IS NULL OR j.fire_time < CAST(:until AS timestamptz))) AS fires;
