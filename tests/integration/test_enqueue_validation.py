"""Bad input gets a clear error naming the problem, and nothing is written."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from shared.enqueue import enqueue, enqueue_many, enqueue_now
from shared.errors import PayloadInvalid, PayloadTooLarge, UnknownJobType, UnknownQueue, ValidationError


def job_count(db) -> int:
    with db.session() as s:
        return s.execute(text("SELECT count(*) FROM jobs")).scalar()


@pytest.mark.parametrize("call, error, words", [
    (lambda s: enqueue(s, "test.recrod", {"key": "a"}), UnknownJobType, ["test.recrod", "did you mean 'test.record'"]),
    (lambda s: enqueue(s, "x'; DROP TABLE jobs; --", {}), UnknownJobType, ["DROP TABLE"]),
    (lambda s: enqueue(s, "test.record", {"key": "a"}, queue="nope"), UnknownQueue, ["'nope'", "known: bulk, default, high, low"]),
    (lambda s: enqueue(s, "test.record", {"key": "a"}, queue="default'; DROP TABLE jobs; --"), UnknownQueue, ["DROP TABLE"]),
    (lambda s: enqueue(s, "test.record", {}), PayloadInvalid, ["key", "Field required"]),
    (lambda s: enqueue(s, "test.record", {"key": 5}), PayloadInvalid, ["key", "string"]),
    (lambda s: enqueue(s, "test.record", {"key": "a", "extra": 1}), PayloadInvalid, ["extra"]),
    (lambda s: enqueue(s, "test.record", {"key": "x" * 300_000}), PayloadTooLarge, ["limit is 262144"]),
    (lambda s: enqueue(s, "test.record", {"key": "a"}, priority=10), ValidationError, ["priority", "0 to 9"]),
    (lambda s: enqueue(s, "test.record", {"key": "a"}, priority=-1), ValidationError, ["priority"]),
    (lambda s: enqueue(s, "test.record", {"key": "a"}, max_attempts=0), ValidationError, ["max_attempts"]),
    (lambda s: enqueue(s, "test.record", {"key": "a"}, delay=-5), ValidationError, ["delay"]),
    (lambda s: enqueue(s, "test.record", {"key": "a"}, metadata={"f": object()}), ValidationError, ["metadata"]),
    (lambda s: enqueue_many(s, "test.record", [{"key": "a"}, {"key": "b"}, {"nokey": 1}]), PayloadInvalid, ["payloads[2]"]),
])
def test_bad_input_is_refused_and_nothing_is_written(db, call, error, words):
    with db.session() as session:
        with pytest.raises(error) as caught:
            call(session)
        # The caller's transaction is still usable: a refusal never poisons it.
        enqueue(session, "test.record", {"key": "after the refusal"})
    message = str(caught.value)
    for word in words:
        assert word in message
    assert job_count(db) == 1


def test_sql_ish_payload_is_data(db):
    nasty = "'); DROP TABLE jobs; -- \\x00 $$"
    job = enqueue_now("test.record", {"key": nasty})
    with db.session() as s:
        assert s.execute(text("SELECT payload->>'key' FROM jobs WHERE id = :i"), {"i": job.id}).scalar() == nasty


def test_enqueue_many_writes_thousands_in_one_statement(db):
    with db.session() as session:
        ids = enqueue_many(session, "test.record", [{"key": str(i)} for i in range(5000)], priority=3)
    assert len(ids) == 5000 and ids == sorted(ids)
    with db.session() as s:
        assert s.execute(text("SELECT count(*) FROM jobs WHERE priority = 3 AND state = 'queued'")).scalar() == 5000


def test_delay_makes_a_scheduled_job(db):
    job = enqueue_now("test.record", {"key": "later"}, delay=60)
    with db.session() as s:
        row = s.execute(text("SELECT state, run_at - created_at AS gap FROM jobs WHERE id = :i"), {"i": job.id}).one()
    assert row.state == "scheduled" and 59 <= row.gap.total_seconds() <= 61
