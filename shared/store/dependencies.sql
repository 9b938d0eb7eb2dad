-- Dependencies between jobs: a job waits until every parent succeeded; a parent that failed or
-- was cancelled cancels its dependents (and theirs), naming itself in the reason.

-- name: lock_parents
-- The parents of a job about to be enqueued, locked so none finishes unseen while we decide.
SELECT id, state FROM jobs WHERE id = ANY(CAST(:ids AS bigint[])) ORDER BY id FOR UPDATE;

-- name: flag_parents
-- Parents learn they have dependents, so finishing them resolves those at once.
UPDATE jobs SET has_dependents = true WHERE id = ANY(CAST(:ids AS bigint[])) AND NOT has_dependents;

-- name: insert_dependencies
-- The edges of one new job.
INSERT INTO job_dependencies (job_id, depends_on_id) SELECT :job_id, unnest(CAST(:parents AS bigint[]));

-- name: lock_waiting_dependents
-- The waiting dependents of finished parents, locked in id order: concurrent parents resolve
-- them in turn, each seeing the others' commits.
SELECT j.id FROM jobs j
WHERE j.id IN (SELECT d.job_id FROM job_dependencies d WHERE d.depends_on_id = ANY(CAST(:ids AS bigint[])))
  AND j.state = 'waiting'
ORDER BY j.id FOR UPDATE OF j;

-- name: waiting_jobs
-- A page of waiting jobs, for the periodic sweep that catches what no finish resolved.
SELECT id FROM jobs WHERE state = 'waiting' AND id > :after ORDER BY id LIMIT :limit;

-- name: resolve_waiting
-- Waiting jobs whose parents are settled: queued (or scheduled) when all succeeded, cancelled
-- naming the first parent that did not.
WITH verdict AS (
    SELECT w.id,
           (SELECT p.id || ' ' || p.state FROM job_dependencies d JOIN jobs p ON p.id = d.depends_on_id
            WHERE d.job_id = w.id AND p.state IN ('failed', 'cancelled') ORDER BY p.id LIMIT 1) AS bad_parent,
           EXISTS (SELECT 1 FROM job_dependencies d JOIN jobs p ON p.id = d.depends_on_id
                   WHERE d.job_id = w.id AND p.state <> 'succeeded') AS pending
    FROM jobs w WHERE w.id = ANY(CAST(:ids AS bigint[])) AND w.state = 'waiting'
)
UPDATE jobs SET state = CASE WHEN v.bad_parent IS NOT NULL THEN 'cancelled'
                             WHEN jobs.run_at > coalesce(:now, now()) THEN 'scheduled' ELSE 'queued' END,
                finished_at = CASE WHEN v.bad_parent IS NOT NULL THEN coalesce(:now, now()) END,
                cancel_reason = CASE WHEN v.bad_parent IS NOT NULL THEN 'dependency ' || v.bad_parent END
FROM verdict v
WHERE jobs.id = v.id AND jobs.state = 'waiting' AND (v.bad_parent IS NOT NULL OR NOT v.pending)
RETURNING jobs.id, jobs.state, jobs.has_dependents;
