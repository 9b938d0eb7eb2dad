"""The platform's session helper composes the way SQLAlchemy users expect."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from shared.enqueue import enqueue


def _count(db) -> int:
    with db.session() as session:
        return int(session.execute(text("SELECT count(*) FROM jobs")).scalar_one())


def test_begin_inside_the_helper_commits(db):
    with db.session() as session:
        with session.begin():
            enqueue(session, "test.record", {"key": "inner"})
        enqueue(session, "test.record", {"key": "after"})  # begins again; committed at the end
    assert _count(db) == 2


def test_an_error_rolls_everything_back(db):
    with pytest.raises(RuntimeError):
        with db.session() as session:
            enqueue(session, "test.record", {"key": "lost"})
            raise RuntimeError("the caller changed its mind")
    assert _count(db) == 0
