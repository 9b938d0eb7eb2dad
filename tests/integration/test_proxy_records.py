"""How a check result moves a proxy: log row, score, streak, status, disabling and recovery
(the bookkeeping of shared/workloads/proxies.py against the real database)."""

from __future__ import annotations

import pytest
from click.testing import CliRunner
from sqlalchemy import text

from shared.crypto import decrypt
from shared.errors import ValidationError
from shared.jobtypes.proxies import ProxyBatch, ProxyCheck
from shared.outcomes import Discard
from shared.settings import load_settings
from shared.workloads import proxies as proxy_service
from tests.workload_data import context, row, rows
from worker.handlers import proxies as proxy_handlers
from worker.proxies.checker import CheckResult

OK = CheckResult(True, 120.0, 200, None, None, "203.0.113.7")
REFUSED = CheckResult(False, None, None, "connect_refused", "connect: ConnectionRefusedError", None)


def new_proxy(db, **fields) -> int:
    with db.session() as session:
        return proxy_service.add_proxy(session, **{"type": "socks5", "host": "127.0.0.1", "port": 1080, **fields}).id


def apply(db, proxy_id: int, *results: CheckResult, disable_after: int = 4) -> tuple[str, int, int]:
    for result in results:
        with db.session() as session:
            proxy_service.record_check(session, proxy_id, result, disable_after)
    return tuple(row(db, "SELECT status, health_score, consecutive_failures FROM proxies WHERE id = :i", i=proxy_id))


def test_a_good_check_is_logged_and_keeps_the_proxy_active(db):
    proxy = new_proxy(db)
    assert apply(db, proxy, OK) == ("active", 100, 0)
    log = row(db, "SELECT ok, latency_ms, http_status, error_class, exit_ip FROM proxy_health_logs")
    assert tuple(log) == (True, 120.0, 200, None, "203.0.113.7")
    checked = row(db, "SELECT last_checked_at, last_latency_ms FROM proxies")
    assert checked.last_checked_at is not None and checked.last_latency_ms == 120.0


def test_failures_make_it_dead_then_disabled_and_disabled_stays(db):
    proxy = new_proxy(db)
    assert apply(db, proxy, OK, OK, OK, OK) == ("active", 100, 0)
    assert apply(db, proxy, REFUSED) == ("active", 76, 1)  # one failure among five, the newest
    assert apply(db, proxy, REFUSED, REFUSED) == ("dead", 48, 3)  # three in a row
    assert apply(db, proxy, REFUSED) == ("disabled", 40, 4)
    assert apply(db, proxy, OK) == ("disabled", 49, 0)  # only an operator enables it again
    assert len(rows(db, "SELECT id FROM proxy_health_logs")) == 9


def test_a_dead_proxy_recovers_through_degraded_to_active(db):
    proxy = new_proxy(db)
    assert apply(db, proxy, REFUSED, REFUSED, REFUSED) == ("dead", 0, 3)
    assert apply(db, proxy, OK) == ("degraded", 29, 0)
    assert apply(db, proxy, OK, OK, OK) == ("degraded", 66, 0)  # not yet the recovery score (70)
    assert apply(db, proxy, OK) == ("active", 72, 0)


def test_the_fan_out_checks_every_proxy_that_is_not_disabled_once(db):
    first, second, third = new_proxy(db, port=1), new_proxy(db, port=2), new_proxy(db, port=3)
    with db.session() as session:
        proxy_service.set_proxy_enabled(session, third, False)
    with db.session() as session:
        assert proxy_service.enqueue_checks(session) == (2, 0)
    with db.session() as session:
        assert proxy_service.enqueue_checks(session) == (0, 2)  # the first checks are still queued
    payloads = [r.payload for r in rows(db, "SELECT payload FROM jobs WHERE type = 'proxies.check' ORDER BY id")]
    assert payloads == [{"proxy_id": first}, {"proxy_id": second}]


def test_passwords_are_encrypted_and_bad_proxies_refused(db):
    proxy = new_proxy(db, username="alice", password="Pr0xy-S3cret")
    stored = row(db, "SELECT password_encrypted FROM proxies WHERE id = :i", i=proxy).password_encrypted
    assert "Pr0xy-S3cret" not in stored and decrypt(stored) == "Pr0xy-S3cret"
    for fields, field in [({"type": "ftp"}, "type"), ({"port": 0}, "port"), ({"password": "x"}, "password"),
                          ({"username": "alice"}, "host")]:
        with pytest.raises(ValidationError) as refused:
            new_proxy(db, **fields)
        assert refused.value.field == field


def test_the_cli_adds_and_lists_proxies_without_their_password(db):
    from shared.cli.workloads import proxies

    added = CliRunner().invoke(proxies, ["add", "http", "10.0.0.1", "3128", "--username", "bob", "--password"],
                               input="Cl1-S3cret\n")
    assert added.exit_code == 0, added.output
    listed = CliRunner().invoke(proxies, ["list", "--json"])
    assert listed.exit_code == 0 and '"host": "10.0.0.1"' in listed.output
    assert '"status": "unchecked"' in listed.output and '"health_score": null' in listed.output
    assert "Cl1-S3cret" not in added.output + listed.output
    with db.session() as session:
        assert session.execute(text("SELECT count(*) FROM proxies WHERE password_encrypted IS NOT NULL")).scalar() == 1


def test_a_new_proxy_is_unchecked_and_unscored_until_its_first_check(db):
    proxy = new_proxy(db)
    assert tuple(row(db, "SELECT status, health_score, last_checked_at FROM proxies WHERE id = :i", i=proxy)) == (
        "unchecked", None, None)
    # The database refuses a score on an unchecked proxy.
    with pytest.raises(Exception, match="ck_proxies_unchecked_has_no_score"), db.session() as session:
        session.execute(text("UPDATE proxies SET health_score = 100 WHERE id = :i"), {"i": proxy})
    # Disabled and enabled again before any check: still unchecked.
    with db.session() as session:
        proxy_service.set_proxy_enabled(session, proxy, False)
    with db.session() as session:
        proxy_service.set_proxy_enabled(session, proxy, True)
    assert row(db, "SELECT status FROM proxies WHERE id = :i", i=proxy)[0] == "unchecked"
    assert apply(db, proxy, OK) == ("active", 100, 0)
    other = new_proxy(db, port=1081)
    assert apply(db, other, REFUSED) == ("dead", 0, 1)


def test_the_fan_out_checks_unchecked_proxies(db):
    proxy = new_proxy(db)
    with db.session() as session:
        assert proxy_service.enqueue_checks(session) == (1, 0)
    assert row(db, "SELECT payload->>'proxy_id' FROM jobs WHERE type = 'proxies.check'")[0] == str(proxy)


def test_a_password_no_key_opens_discards_the_check_and_spares_the_batch(db):
    """As for a post's or a message's token: the job is discarded, not retried (no retry brings
    the key back). In a sweep's batch the other proxies are still checked, and the sweep counts
    the proxy so it finishes."""
    settings = load_settings(proxy_connect_timeout_seconds=1, proxy_total_timeout_seconds=2)
    broken = new_proxy(db, port=1, username="alice", password="Pr0xy-S3cret")
    closed = new_proxy(db, port=1, type="http")  # nothing listens on port 1: refused at once
    with db.session() as session:
        session.execute(text("UPDATE proxies SET password_encrypted = 'not-a-fernet-token' WHERE id = :i"), {"i": broken})
    outcome = proxy_handlers.check(ProxyCheck(proxy_id=broken), context(db, settings))
    assert isinstance(outcome, Discard) and outcome.reason.startswith(f"proxy {broken}: ")
    assert "Pr0xy-S3cret" not in outcome.reason and rows(db, "SELECT id FROM proxy_health_logs") == []

    with db.session() as session:
        sweep = proxy_service.start_sweep(session, settings.proxy_check_batch_size).sweep
        assert sweep is not None
        sweep_id = sweep.id
    assert proxy_handlers.check_batch(ProxyBatch(sweep_id=sweep_id, proxy_ids=[broken, closed]),
                                      context(db, settings)) is None
    assert [tuple(r) for r in rows(db, "SELECT proxy_id, error_class FROM proxy_health_logs")] == [
        (closed, "connect_refused")]
    swept = row(db, "SELECT total, checked, finished_at FROM proxy_sweeps WHERE id = :i", i=sweep_id)
    assert (swept.total, swept.checked) == (2, 2) and swept.finished_at is not None
