"""Migration 0006: proxies that no check ever recorded lose the score the old column defaults
gave them, and go back to those defaults on a downgrade."""

from __future__ import annotations

from sqlalchemy import create_engine, pool, text

from shared import migrate


def _proxies(url: str) -> dict[str, tuple]:
    engine = create_engine(url, poolclass=pool.NullPool)
    try:
        with engine.connect() as connection:
            return {r.host: (r.status, r.health_score)
                    for r in connection.execute(text("SELECT host, status, health_score FROM proxies"))}
    finally:
        engine.dispose()


def test_never_checked_proxies_become_unchecked_and_unscored(fresh_database_url):
    url = fresh_database_url
    migrate.upgrade(url, "0003")
    engine = create_engine(url, poolclass=pool.NullPool)
    with engine.begin() as connection:
        connection.execute(text(
            "INSERT INTO proxies (type, host, port, status, health_score) VALUES "
            "('http', 'never-checked', 1, 'active', 100), ('http', 'checked', 1, 'active', 100), "
            "('http', 'disabled-unchecked', 1, 'disabled', 100), ('http', 'dead', 1, 'dead', 0)"))
        connection.execute(text(
            "INSERT INTO proxy_health_logs (proxy_id, ok) SELECT id, true FROM proxies WHERE host = 'checked' "
            "UNION ALL SELECT id, false FROM proxies WHERE host = 'dead'"))
    engine.dispose()

    migrate.upgrade(url, "0006")
    assert _proxies(url) == {
        "never-checked": ("unchecked", None), "checked": ("active", 100),
        "disabled-unchecked": ("disabled", None), "dead": ("dead", 0),
    }
    migrate.downgrade(url, "0003")
    assert _proxies(url) == {
        "never-checked": ("active", 100), "checked": ("active", 100),
        "disabled-unchecked": ("disabled", 100), "dead": ("dead", 0),
    }
