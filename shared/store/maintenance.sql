-- Maintenance: pruning finished jobs, and the per-minute metrics roll-up. Same format as
-- queries.sql. Pruning works in small batches (each its own short transaction); the roll-up
-- recomputes whole buckets from the raw rows and upserts them, so repeating it (a restart, a
-- second replica) writes the same figures instead of adding them twice.

-- name: prune_finished_jobs
-- Delete up to :limit finished jobs of one queue past its retention (oldest first, through
-- ix_jobs_finished); executions, logs and dependency rows go with them (ON DELETE CASCADE).
-- Kept: a job some unfinished job still depends on (dependents are never orphaned), and one
-- whose unique period outlasts the retention (deleting it would free its key early).
DELETE FROM jobs
WHERE id IN (
    SELECT j.id FROM jobs j
    WHERE j.queue = :queue AND j.state IN ('succeeded', 'failed', 'cancelled')
      AND j.finished_at < coalesce(CAST(:now AS timestamptz), now()) - make_interval(secs => :retention)
      AND (j.unique_key IS NULL OR j.unique_released
           OR j.finished_at + make_interval(secs => j.unique_period_seconds) <= coalesce(CAST(:now AS timestamptz), now()))
      AND NOT EXISTS (SELECT 1 FROM job_dependencies d JOIN jobs c ON c.id = d.job_id
                      WHERE d.depends_on_id = j.id AND c.state NOT IN ('succeeded', 'failed', 'cancelled'))
    ORDER BY j.finished_at
    LIMIT :limit
    FOR UPDATE OF j SKIP LOCKED)
RETURNING id;

-- name: prune_stopped_workers
-- Forget worker processes stopped longer than :retention seconds (kept until then for history).
DELETE FROM workers
WHERE id IN (SELECT id FROM workers
             WHERE state = 'stopped'
               AND last_heartbeat_at < coalesce(CAST(:now AS timestamptz), now()) - make_interval(secs => :retention)
             LIMIT :limit)
RETURNING id;

-- name: prune_queue_metrics
-- Drop queue metric rows older than :retention seconds, a batch at a time.
DELETE FROM queue_metrics
WHERE (bucket, queue) IN (SELECT bucket, queue FROM queue_metrics
                          WHERE bucket < coalesce(CAST(:now AS timestamptz), now()) - make_interval(secs => :retention)
                          LIMIT :limit)
RETURNING bucket;

-- name: prune_job_metrics
-- Drop job metric rows older than :retention seconds, a batch at a time.
DELETE FROM job_metrics
WHERE (bucket, job_type) IN (SELECT bucket, job_type FROM job_metrics
                             WHERE bucket < coalesce(CAST(:now AS timestamptz), now()) - make_interval(secs => :retention)
                             LIMIT :limit)
RETURNING bucket;

-- name: prune_proxy_health_logs
-- Drop proxy check records older than :retention seconds, oldest first, a batch at a time
-- (through ix_proxy_health_logs_checked_at). Scores live on `proxies` and need none of them.
DELETE FROM proxy_health_logs
WHERE id IN (SELECT id FROM proxy_health_logs
             WHERE checked_at < coalesce(CAST(:now AS timestamptz), now()) - make_interval(secs => :retention)
             ORDER BY checked_at
             LIMIT :limit)
RETURNING id;

-- name: prune_proxy_sweeps
-- Drop finished sweeps older than :retention seconds (one row per sweep: a few hundred a day).
DELETE FROM proxy_sweeps
WHERE id IN (SELECT id FROM proxy_sweeps
             WHERE finished_at < coalesce(CAST(:now AS timestamptz), now()) - make_interval(secs => :retention)
             LIMIT :limit)
RETURNING id;

-- name: database_now
-- The time a round works from (the roll-up; a schedule's next fire): the injected clock, or the database's.
SELECT coalesce(CAST(:now AS timestamptz), now());

-- name: latest_queue_metrics_bucket
-- The newest rolled-up minute, so a restarted roll-up catches up on the minutes it missed.
SELECT max(bucket) FROM queue_metrics;

-- name: rollup_queue_metrics
-- The roll-up reads only rows that can have changed in the window, whatever the history: jobs
-- finished since :start (ix_jobs_finished, one range per queue), the live jobs (each state
-- through its partial index) and executions started since :start (ix_job_executions_started_at).
-- An execution that ended in the window belongs to a job finished since :start or to a live job
-- with attempt > 0 (a job's attempts run one after another, and the state a job is left in by an
-- attempt's end is either terminal, at or after that end, or live), so executions are looked up
-- by those jobs' ids: no index on job_executions.finished_at, which would make every finish a
-- non-HOT update (see migration 0009).
-- Per queue and minute in [:start, :stop): recompute the counts and percentiles from the raw
-- rows and upsert them (a row for every queue, zeros included). Depth and oldest-waiting age
-- are a snapshot taken for :snapshot_bucket only, and the first snapshot written is kept.
-- Definitions: enqueued = jobs created; started = executions started; succeeded = executions
-- ending succeeded; failed = jobs ending failed; retried = executions ending failed, timed out
-- or lost that were not the job's final failure; wait = start minus run_at of the job's
-- latest attempt; run = end minus start of executions that ended (lost ones excluded).
WITH buckets AS (
    SELECT generate_series(CAST(:start AS timestamptz), CAST(:stop AS timestamptz) - interval '1 minute',
                           interval '1 minute') AS bucket
), recent_finished AS (
    SELECT f.* FROM queues q CROSS JOIN LATERAL (
        SELECT id, queue, state, attempt, created_at, finished_at FROM jobs
        WHERE jobs.queue = q.name AND jobs.state IN ('succeeded', 'failed', 'cancelled')
          AND jobs.finished_at >= CAST(:start AS timestamptz)) AS f
), live AS (
    SELECT id, queue, state, attempt, created_at, run_at FROM jobs WHERE state = 'waiting'
    UNION ALL SELECT id, queue, state, attempt, created_at, run_at FROM jobs WHERE state = 'scheduled'
    UNION ALL SELECT id, queue, state, attempt, created_at, run_at FROM jobs WHERE state = 'queued'
    UNION ALL SELECT id, queue, state, attempt, created_at, run_at FROM jobs WHERE state = 'dispatched'
    UNION ALL SELECT id, queue, state, attempt, created_at, run_at FROM jobs WHERE state = 'running'
), created AS (
    SELECT date_trunc('minute', c.created_at) AS bucket, c.queue, count(*) AS n
    FROM (SELECT queue, created_at FROM live UNION ALL SELECT queue, created_at FROM recent_finished) AS c
    WHERE c.created_at >= CAST(:start AS timestamptz) AND c.created_at < CAST(:stop AS timestamptz)
    GROUP BY 1, 2
), failed_jobs AS (
    SELECT date_trunc('minute', finished_at) AS bucket, queue, count(*) AS n
    FROM recent_finished WHERE state = 'failed' AND finished_at < CAST(:stop AS timestamptz)
    GROUP BY 1, 2
), starts AS (
    SELECT date_trunc('minute', e.started_at) AS bucket, j.queue, count(*) AS n,
           percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM e.started_at - j.run_at) * 1000)
               FILTER (WHERE e.attempt = j.attempt) AS wait_p50,
           percentile_cont(0.95) WITHIN GROUP (ORDER BY extract(epoch FROM e.started_at - j.run_at) * 1000)
               FILTER (WHERE e.attempt = j.attempt) AS wait_p95
    FROM job_executions e JOIN jobs j ON j.id = e.job_id
    WHERE e.started_at >= CAST(:start AS timestamptz) AND e.started_at < CAST(:stop AS timestamptz)
    GROUP BY 1, 2
), ended_jobs AS (
    SELECT id, queue, state, attempt FROM recent_finished
    UNION ALL SELECT id, queue, state, attempt FROM live WHERE attempt > 0
), ends AS (
    SELECT date_trunc('minute', e.finished_at) AS bucket, j.queue,
           count(*) FILTER (WHERE e.state = 'succeeded') AS succeeded,
           count(*) FILTER (WHERE e.state IN ('failed', 'timed_out', 'lost')
                            AND NOT (j.state = 'failed' AND j.attempt = e.attempt)) AS retried,
           percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM e.finished_at - e.started_at) * 1000)
               FILTER (WHERE e.state <> 'lost') AS run_p50,
           percentile_cont(0.95) WITHIN GROUP (ORDER BY extract(epoch FROM e.finished_at - e.started_at) * 1000)
               FILTER (WHERE e.state <> 'lost') AS run_p95
    FROM ended_jobs j JOIN job_executions e ON e.job_id = j.id
    WHERE e.finished_at >= CAST(:start AS timestamptz) AND e.finished_at < CAST(:stop AS timestamptz)
    GROUP BY 1, 2
), depth AS (
    SELECT queue,
           jsonb_build_object('waiting', count(*) FILTER (WHERE state = 'waiting'),
                              'scheduled', count(*) FILTER (WHERE state = 'scheduled'),
                              'queued', count(*) FILTER (WHERE state = 'queued'),
                              'dispatched', count(*) FILTER (WHERE state = 'dispatched'),
                              'running', count(*) FILTER (WHERE state = 'running')) AS depth,
           extract(epoch FROM CAST(:now AS timestamptz) - min(run_at) FILTER (WHERE state = 'queued')) AS oldest
    FROM live
    GROUP BY queue
)
INSERT INTO queue_metrics (bucket, queue, enqueued, started, succeeded, failed, retried, depth,
                           oldest_waiting_seconds, wait_p50_ms, wait_p95_ms, run_p50_ms, run_p95_ms)
SELECT b.bucket, q.name, coalesce(c.n, 0), coalesce(s.n, 0), coalesce(e.succeeded, 0), coalesce(f.n, 0),
       coalesce(e.retried, 0),
       CASE WHEN b.bucket = CAST(:snapshot_bucket AS timestamptz)
            THEN coalesce(d.depth, '{"waiting": 0, "scheduled": 0, "queued": 0, "dispatched": 0, "running": 0}')
            ELSE '{}' END,
       CASE WHEN b.bucket = CAST(:snapshot_bucket AS timestamptz) THEN d.oldest END,
       s.wait_p50, s.wait_p95, e.run_p50, e.run_p95
FROM buckets b CROSS JOIN queues q
LEFT JOIN created c ON c.bucket = b.bucket AND c.queue = q.name
LEFT JOIN failed_jobs f ON f.bucket = b.bucket AND f.queue = q.name
LEFT JOIN starts s ON s.bucket = b.bucket AND s.queue = q.name
LEFT JOIN ends e ON e.bucket = b.bucket AND e.queue = q.name
LEFT JOIN depth d ON d.queue = q.name
ON CONFLICT (bucket, queue) DO UPDATE
SET enqueued = EXCLUDED.enqueued, started = EXCLUDED.started, succeeded = EXCLUDED.succeeded,
    failed = EXCLUDED.failed, retried = EXCLUDED.retried,
    depth = CASE WHEN queue_metrics.depth = '{}' THEN EXCLUDED.depth ELSE queue_metrics.depth END,
    oldest_waiting_seconds = CASE WHEN queue_metrics.depth = '{}' THEN EXCLUDED.oldest_waiting_seconds
                                  ELSE queue_metrics.oldest_waiting_seconds END,
    wait_p50_ms = EXCLUDED.wait_p50_ms, wait_p95_ms = EXCLUDED.wait_p95_ms,
    run_p50_ms = EXCLUDED.run_p50_ms, run_p95_ms = EXCLUDED.run_p95_ms;

-- name: rollup_job_metrics
-- Per job type and minute in [:start, :stop) with any activity: the same definitions and sources
-- as the queue roll-up, plus the longest run and the failure rate (failed / (succeeded + failed)).
WITH recent_finished AS (
    SELECT f.* FROM queues q CROSS JOIN LATERAL (
        SELECT id, type, state, attempt, finished_at FROM jobs
        WHERE jobs.queue = q.name AND jobs.state IN ('succeeded', 'failed', 'cancelled')
          AND jobs.finished_at >= CAST(:start AS timestamptz)) AS f
), retrying AS (
    SELECT id, type, state, attempt FROM jobs WHERE state = 'scheduled' AND attempt > 0
    UNION ALL SELECT id, type, state, attempt FROM jobs WHERE state = 'queued' AND attempt > 0
    UNION ALL SELECT id, type, state, attempt FROM jobs WHERE state = 'dispatched' AND attempt > 0
    UNION ALL SELECT id, type, state, attempt FROM jobs WHERE state = 'running'
    UNION ALL SELECT id, type, state, attempt FROM jobs WHERE state = 'waiting' AND attempt > 0
), failed_jobs AS (
    SELECT date_trunc('minute', finished_at) AS bucket, type, count(*) AS n
    FROM recent_finished WHERE state = 'failed' AND finished_at < CAST(:stop AS timestamptz)
    GROUP BY 1, 2
), starts AS (
    SELECT date_trunc('minute', e.started_at) AS bucket, j.type, count(*) AS n
    FROM job_executions e JOIN jobs j ON j.id = e.job_id
    WHERE e.started_at >= CAST(:start AS timestamptz) AND e.started_at < CAST(:stop AS timestamptz)
    GROUP BY 1, 2
), ended_jobs AS (
    SELECT id, type, state, attempt FROM recent_finished UNION ALL SELECT id, type, state, attempt FROM retrying
), ends AS (
    SELECT date_trunc('minute', e.finished_at) AS bucket, j.type,
           count(*) FILTER (WHERE e.state = 'succeeded') AS succeeded,
           count(*) FILTER (WHERE e.state IN ('failed', 'timed_out', 'lost')
                            AND NOT (j.state = 'failed' AND j.attempt = e.attempt)) AS retried,
           percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM e.finished_at - e.started_at) * 1000)
               FILTER (WHERE e.state <> 'lost') AS run_p50,
           percentile_cont(0.95) WITHIN GROUP (ORDER BY extract(epoch FROM e.finished_at - e.started_at) * 1000)
               FILTER (WHERE e.state <> 'lost') AS run_p95,
           max(extract(epoch FROM e.finished_at - e.started_at) * 1000) FILTER (WHERE e.state <> 'lost') AS run_max
    FROM ended_jobs j JOIN job_executions e ON e.job_id = j.id
    WHERE e.finished_at >= CAST(:start AS timestamptz) AND e.finished_at < CAST(:stop AS timestamptz)
    GROUP BY 1, 2
), keys AS (
    SELECT bucket, type FROM failed_jobs UNION SELECT bucket, type FROM starts UNION SELECT bucket, type FROM ends
)
INSERT INTO job_metrics (bucket, job_type, started, succeeded, failed, retried, run_p50_ms, run_p95_ms, run_max_ms,
                         failure_rate)
SELECT k.bucket, k.type, coalesce(s.n, 0), coalesce(e.succeeded, 0), coalesce(f.n, 0), coalesce(e.retried, 0),
       e.run_p50, e.run_p95, e.run_max,
       CASE WHEN coalesce(e.succeeded, 0) + coalesce(f.n, 0) > 0
            THEN coalesce(f.n, 0)::double precision / (coalesce(e.succeeded, 0) + coalesce(f.n, 0)) END
FROM keys k
LEFT JOIN failed_jobs f ON f.bucket = k.bucket AND f.type = k.type
LEFT JOIN starts s ON s.bucket = k.bucket AND s.type = k.type
LEFT JOIN ends e ON e.bucket = k.bucket AND e.type = k.type
ON CONFLICT (bucket, job_type) DO UPDATE
SET started = EXCLUDED.started, succeeded = EXCLUDED.succeeded, failed = EXCLUDED.failed,
    retried = EXCLUDED.retried, run_p50_ms = EXCLUDED.run_p50_ms, run_p95_ms = EXCLUDED.run_p95_ms,
    run_max_ms = EXCLUDED.run_max_ms, failure_rate = EXCLUDED.failure_rate;
