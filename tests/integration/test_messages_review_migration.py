"""Migration 0010: a message flagged for review (pending, `needs_review` true) becomes the state
`needs_review`, as a publication in the same situation is; a downgrade flags it again."""

from __future__ import annotations

from sqlalchemy import create_engine, pool, text

from shared import migrate


def _messages(url: str, columns: str) -> dict[str, tuple]:
    engine = create_engine(url, poolclass=pool.NullPool)
    try:
        with engine.connect() as connection:
            return {r[0]: tuple(r[1:]) for r in connection.execute(text(f"SELECT text, {columns} FROM proactive_messages"))}
    finally:
        engine.dispose()


def test_flagged_pending_messages_become_needs_review_and_back(fresh_database_url):
    url = fresh_database_url
    migrate.upgrade(url, "0009")
    engine = create_engine(url, poolclass=pool.NullPool)
    with engine.begin() as connection:
        user = connection.execute(text("INSERT INTO users (external_id) VALUES ('u') RETURNING id")).scalar()
        connection.execute(text(
            "INSERT INTO proactive_messages (user_id, text, state, needs_review, send_started_at, sent_at) VALUES "
            "(:u, 'flagged', 'pending', true, now(), NULL), (:u, 'waiting', 'pending', false, NULL, NULL), "
            "(:u, 'sent', 'sent', false, now(), now())"), {"u": user})
    engine.dispose()

    migrate.upgrade(url, "0010")
    assert _messages(url, "state") == {"flagged": ("needs_review",), "waiting": ("pending",), "sent": ("sent",)}
    migrate.downgrade(url, "0009")
    assert _messages(url, "state, needs_review") == {
        "flagged": ("pending", True), "waiting": ("pending", False), "sent": ("sent", False)}
