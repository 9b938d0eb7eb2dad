-- The operator console's reads and its audit log. Each starts with `-- name: <name>` and a
-- one-line comment. Job searches page by id (keyset: `id < :before`), never OFFSET, so the
-- thousandth page costs what the first does. A NULL filter matches everything; the console runs
-- these with plan_cache_mode = force_custom_plan, so the planner drops the unused filters
-- instead of building one generic plan for all of them.

-- name: console_find_jobs
-- One page of jobs matching the operator's filters, newest first, older than :before (keyset).
SELECT id, type, queue, state, priority, attempt, max_attempts, created_at, run_at, started_at, finished_at,
       worker_id, unique_key, progress, last_error
FROM jobs
WHERE (CAST(:queue AS text) IS NULL OR queue = CAST(:queue AS text))
  AND (CAST(:state AS text) IS NULL OR state = CAST(:state AS text))
  AND (CAST(:type AS text) IS NULL OR type = CAST(:type AS text))
  AND (CAST(:since AS timestamptz) IS NULL OR created_at >= CAST(:since AS timestamptz))
  AND (CAST(:until AS timestamptz) IS NULL OR created_at < CAST(:until AS timestamptz))
  AND (CAST(:text AS text) IS NULL OR payload::text ILIKE CAST(:text AS text) OR metadata::text ILIKE CAST(:text AS text))
  AND (CAST(:unique_key AS text) IS NULL OR unique_key = CAST(:unique_key AS text))
  AND (CAST(:worker AS text) IS NULL OR worker_id LIKE CAST(:worker AS text))
  AND (CAST(:before AS bigint) IS NULL OR id < CAST(:before AS bigint))
ORDER BY id DESC LIMIT :limit;

-- name: console_find_job_ids
-- Ids of one batch of jobs matching the filters, below :before: how bulk actions walk a selection.
SELECT id
FROM jobs
WHERE (CAST(:queue AS text) IS NULL OR queue = CAST(:queue AS text))
  AND (CAST(:state AS text) IS NULL OR state = CAST(:state AS text))
  AND (CAST(:type AS text) IS NULL OR type = CAST(:type AS text))
  AND (CAST(:since AS timestamptz) IS NULL OR created_at >= CAST(:since AS timestamptz))
  AND (CAST(:until AS timestamptz) IS NULL OR created_at < CAST(:until AS timestamptz))
  AND (CAST(:text AS text) IS NULL OR payload::text ILIKE CAST(:text AS text) OR metadata::text ILIKE CAST(:text AS text))
  AND (CAST(:unique_key AS text) IS NULL OR unique_key = CAST(:unique_key AS text))
  AND (CAST(:worker AS text) IS NULL OR worker_id LIKE CAST(:worker AS text))
  AND (CAST(:before AS bigint) IS NULL OR id < CAST(:before AS bigint))
ORDER BY id DESC LIMIT :limit;

-- name: console_count_jobs
-- How many jobs match the filters, counting at most :cap (what a bulk action's confirmation shows).
SELECT count(*) FROM (
  SELECT 1 FROM jobs
  WHERE (CAST(:queue AS text) IS NULL OR queue = CAST(:queue AS text))
    AND (CAST(:state AS text) IS NULL OR state = CAST(:state AS text))
    AND (CAST(:type AS text) IS NULL OR type = CAST(:type AS text))
    AND (CAST(:since AS timestamptz) IS NULL OR created_at >= CAST(:since AS timestamptz))
    AND (CAST(:until AS timestamptz) IS NULL OR created_at < CAST(:until AS timestamptz))
    AND (CAST(:text AS text) IS NULL OR payload::text ILIKE CAST(:text AS text) OR metadata::text ILIKE CAST(:text AS text))
    AND (CAST(:unique_key AS text) IS NULL OR unique_key = CAST(:unique_key AS text))
    AND (CAST(:worker AS text) IS NULL OR worker_id LIKE CAST(:worker AS text))
  LIMIT :cap
) matching;

-- name: console_run_job_now
-- Make a scheduled job (first run or retry backoff) due now; the dispatcher promotes it next round.
UPDATE jobs SET run_at = coalesce(:now, now())
WHERE id = :job_id AND state = 'scheduled' AND run_at > coalesce(:now, now())
RETURNING id;

-- name: console_job_parents
-- The jobs a job depends on, with their states.
SELECT j.id, j.type, j.state FROM job_dependencies d JOIN jobs j ON j.id = d.depends_on_id
WHERE d.job_id = :job_id ORDER BY j.id;

-- name: console_job_children
-- The jobs that depend on a job, with their states (ix_job_dependencies_depends_on_id).
SELECT j.id, j.type, j.state FROM job_dependencies d JOIN jobs j ON j.id = d.job_id
WHERE d.depends_on_id = :job_id ORDER BY j.id LIMIT 500;

-- name: console_queue_throughput
-- Per time bucket (:step_seconds wide) over the last :seconds: jobs started, succeeded, failed and retried, all queues.
SELECT to_timestamp(floor(extract(epoch FROM bucket) / :step_seconds) * :step_seconds) AS at,
       sum(started)::int AS started, sum(succeeded)::int AS succeeded, sum(failed)::int AS failed,
       sum(retried)::int AS retried
FROM queue_metrics
WHERE bucket >= coalesce(:now, now()) - make_interval(secs => :seconds)
GROUP BY 1 ORDER BY 1;

-- name: console_type_failures
-- Job types with the most failures over the last :seconds, from job_metrics.
SELECT job_type, sum(started)::int AS started, sum(failed)::int AS failed, sum(retried)::int AS retried,
       max(run_p95_ms) AS run_p95_ms
FROM job_metrics
WHERE bucket >= coalesce(:now, now()) - make_interval(secs => :seconds)
GROUP BY job_type ORDER BY sum(failed) DESC, job_type LIMIT :limit;

-- name: console_live_workers
-- Worker processes with a heartbeat fresher than :stale_after seconds, and the jobs each runs now.
SELECT w.id, w.hostname, w.pid, w.queues, w.state, w.started_at, w.last_heartbeat_at,
       (SELECT count(*) FROM jobs j WHERE j.state = 'running' AND j.worker_id = w.id) AS running
FROM workers w
WHERE w.state = 'online' AND w.last_heartbeat_at >= coalesce(:now, now()) - make_interval(secs => :stale_after)
ORDER BY w.hostname, w.pid;

-- name: console_proxies
-- Every proxy with its score and status (never its password).
SELECT id, type, host, port, username, status, health_score, consecutive_failures, last_checked_at, last_latency_ms
FROM proxies ORDER BY id LIMIT :limit;

-- name: console_proxy_checks
-- The latest health checks of all proxies, newest first.
SELECT proxy_id, checked_at, ok, latency_ms, http_status, error_class, error_message, exit_ip
FROM proxy_health_logs ORDER BY id DESC LIMIT :limit;

-- name: console_posts
-- The newest posts with their publications' states counted.
SELECT p.id, p.user_id, left(p.content, 120) AS content, p.state, p.scheduled_at, p.published_at, p.error_message,
       (SELECT count(*) FROM post_publications x WHERE x.post_id = p.id) AS publications,
       (SELECT count(*) FROM post_publications x WHERE x.post_id = p.id AND x.state = 'published') AS published
FROM posts p ORDER BY p.id DESC LIMIT :limit;

-- name: console_publications
-- The newest publications with their account's platform (never its token).
SELECT x.id, x.post_id, a.platform, a.external_id, x.state, x.platform_post_id, x.publish_started_at,
       x.published_at, x.error_message, x.job_id
FROM post_publications x JOIN social_accounts a ON a.id = x.social_account_id
ORDER BY x.id DESC LIMIT :limit;

-- name: console_messages
-- The newest proactive messages (text shortened).
SELECT id, user_id, left(text, 120) AS text, state, send_at, send_started_at, sent_at, failure_reason, job_id
FROM proactive_messages ORDER BY id DESC LIMIT :limit;

-- name: console_review_messages
-- Messages whose send has an unknown outcome (a crash after the request): an operator settles them.
SELECT id, user_id, text, state, send_started_at, failure_reason, job_id
FROM proactive_messages WHERE state = 'needs_review' ORDER BY id LIMIT :limit;

-- name: console_review_publications
-- Publications whose outcome is unknown after a crash: an operator settles them.
SELECT x.id, x.post_id, a.platform, a.external_id, x.publish_started_at, x.error_message, x.job_id
FROM post_publications x JOIN social_accounts a ON a.id = x.social_account_id
WHERE x.state = 'needs_review' ORDER BY x.id LIMIT :limit;

-- name: console_audit_insert
-- Record one operator action (who, what, on what, how many rows).
INSERT INTO console_audit (username, role, action, target, count, detail)
VALUES (:username, :role, :action, :target, :count, CAST(:detail AS jsonb))
RETURNING id;

-- name: console_audit_page
-- One page of the audit log, newest first, older than :before (keyset).
SELECT id, at, username, role, action, target, count, detail
FROM console_audit
WHERE CAST(:before AS bigint) IS NULL OR id < CAST(:before AS bigint)
ORDER BY id DESC LIMIT :limit;
