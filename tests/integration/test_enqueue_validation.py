"""Bad input gets a clear error naming the problem, and nothing is written."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from shared.enqueue import enqueue, enqueue_many, enqueue_now
from shared.errors import PayloadInvalid, PayloadTooLarge, UnknownJobType, UnknownQueue, ValidationError
from shared.jobtypes.registry import registry
from shared.settings import get_settings, load_settings


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


@pytest.fixture
def configured_with():
    """Resolves the process-wide registry with a settings object of the test's own, then with
    the run's settings again."""
    yield registry.configure
    registry.configure(get_settings())


def test_stored_timeouts_are_those_the_registry_resolved_from_the_settings(db, configured_with):
    configured_with(load_settings({}, platform_timeout_seconds=2.5, proxy_connect_timeout_seconds=1,
                                  proxy_total_timeout_seconds=4, proxy_check_batch_size=7, proxy_check_concurrency=3))
    with db.session() as session:
        jobs = {
            "messages.send": enqueue(session, "messages.send", {"message_id": 1}).id,
            "posts.publish": enqueue(session, "posts.publish", {"publication_id": 1, "social_account_id": 1}).id,
            "proxies.check": enqueue(session, "proxies.check", {"proxy_id": 1}).id,
            "proxies.check_batch": enqueue_many(session, "proxies.check_batch", [{"sweep_id": 1, "proxy_ids": [1]}])[0],
            "proxies.check_all": enqueue(session, "proxies.check_all").id,
            "explicit": enqueue(session, "messages.send", {"message_id": 2}, timeout=12).id,
        }
        stored = dict(session.execute(text("SELECT id, timeout_seconds FROM jobs")).all())
    assert {name: stored[job_id] for name, job_id in jobs.items()} == {
        "messages.send": 32.5, "posts.publish": 40.0, "proxies.check": 34.0, "proxies.check_batch": 72.0,
        "proxies.check_all": 300.0, "explicit": 12.0,
    }
