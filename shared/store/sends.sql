-- Send-time limits (Telegram per bot and per chat, posts per social account): reservations of
-- sends under per-key row locks, on the database's clock. The rule is the function
-- send_reserve (migration 0008); shared/workloads/pacing.py explains it.

-- name: reserve_send
-- Reserve one send against every key (locked in key order), or say how long to wait and why.
SELECT ok, started_at, wait_seconds, blocking_key, slot_ids
FROM send_reserve(CAST(:keys AS text[]), CAST(:limits AS integer[]), CAST(:periods AS double precision[]),
                  CAST(:holder AS bigint), CAST(:hold AS double precision));

-- name: finish_send_slots
-- The send's answer came (or it gave up): its slots count until `ended` plus each key's period.
UPDATE send_slots SET ended_at = least(expires_at, CAST(:ended AS timestamptz)) WHERE id = ANY(CAST(:ids AS bigint[]));
