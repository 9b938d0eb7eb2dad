"""Unique jobs and dependencies, driven through the store with an injected clock."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
from sqlalchemy import text

from shared.clock import FrozenClock
from shared.control import cancel_job, get_job
from shared.enqueue import enqueue, enqueue_now
from shared.errors import ValidationError
from shared.store import dependencies as dependency_store

T0 = datetime(2026, 6, 1, 12, 0, tzinfo=timezone.utc)


def test_duplicate_returns_the_holder_and_says_so(db):
    first = enqueue_now("test.unique", {"key": "a"})
    again = enqueue_now("test.unique", {"key": "a"})
    other = enqueue_now("test.unique", {"key": "b"})
    assert not first.duplicate and again.duplicate and again.id == first.id
    assert other.id != first.id


def test_explicit_unique_key_on_any_type(db):
    first = enqueue_now("test.record", {"key": "x"}, unique_key="report:2026-06-01")
    again = enqueue_now("test.record", {"key": "y"}, unique_key="report:2026-06-01")
    assert again.duplicate and again.id == first.id


def test_key_is_free_once_the_holder_finished(db):
    first = enqueue_now("test.unique", {"key": "a"})
    cancel_job(first.id)
    assert not enqueue_now("test.unique", {"key": "a"}).duplicate


def test_unique_period_after_finish(db):
    clock = FrozenClock(T0)
    first = enqueue_now("test.unique", {"key": "p"}, unique_for=60, clock=clock)
    cancel_job(first.id, clock=clock)
    clock.advance(59)
    assert enqueue_now("test.unique", {"key": "p"}, unique_for=60, clock=clock).id == first.id
    clock.advance(2)
    fresh = enqueue_now("test.unique", {"key": "p"}, unique_for=60, clock=clock)
    assert not fresh.duplicate and fresh.id != first.id


def test_uniqueness_is_a_constraint(db):
    enqueue_now("test.unique", {"key": "c"})
    with pytest.raises(Exception, match="uq_jobs_unique_key_held"):
        with db.engine.begin() as connection:
            connection.execute(
                text("INSERT INTO jobs (type, payload, unique_key) VALUES ('test.unique', :payload, :key)"),
                {"payload": '{"key": "c"}', "key": 'test.unique|["c"]'},
            )


def test_dependent_waits_then_runs_when_parents_succeed(db):
    parents = [enqueue_now("test.record", {"key": f"p{i}"}).id for i in range(3)]
    child = enqueue_now("test.record", {"key": "child"}, depends_on=parents)
    assert get_job(child.id).state == "waiting"
    with db.session() as session:
        session.execute(text("UPDATE jobs SET state = 'succeeded', finished_at = now() WHERE id = ANY(:ids)"), {"ids": parents[:2]})
        assert dependency_store.settle(session, waiting=[child.id]) == []
        session.execute(text("UPDATE jobs SET state = 'succeeded', finished_at = now() WHERE id = :i"), {"i": parents[2]})
        assert dependency_store.settle(session, ended=[parents[2]]) == [(child.id, "queued")]


def test_failed_parent_cancels_dependents_and_theirs_naming_it(db):
    parent = enqueue_now("test.record", {"key": "p"})
    child = enqueue_now("test.record", {"key": "c"}, depends_on=[parent.id])
    grandchild = enqueue_now("test.record", {"key": "g"}, depends_on=[child.id])
    assert cancel_job(parent.id) == "cancelled"
    assert get_job(child.id).job["cancel_reason"] == f"dependency {parent.id} cancelled"
    assert get_job(grandchild.id).job["cancel_reason"] == f"dependency {child.id} cancelled"
    assert get_job(grandchild.id).state == "cancelled"


def test_enqueue_after_a_parent_failed_is_cancelled_at_once(db):
    parent = enqueue_now("test.record", {"key": "p"})
    cancel_job(parent.id)
    child = enqueue_now("test.record", {"key": "c"}, depends_on=[parent.id])
    assert get_job(child.id).state == "cancelled"


def test_enqueue_after_parents_succeeded_is_runnable(db):
    parent = enqueue_now("test.record", {"key": "p"})
    with db.session() as session:
        session.execute(text("UPDATE jobs SET state = 'succeeded' WHERE id = :i"), {"i": parent.id})
    assert get_job(enqueue_now("test.record", {"key": "c"}, depends_on=[parent.id]).id).state == "queued"


def test_unknown_parent_is_refused_and_nothing_written(db):
    with db.session() as session:
        with pytest.raises(ValidationError, match="do not exist: \\[999999\\]"):
            enqueue(session, "test.record", {"key": "c"}, depends_on=[999999])
    with db.session() as session:
        assert session.execute(text("SELECT count(*) FROM jobs")).scalar() == 0
