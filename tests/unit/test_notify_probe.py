"""The dispatcher's NOTIFY probe: when a token is due, heard, or judged lost, and what /healthz
shows of it."""

from __future__ import annotations

from scheduler.health import health_report
from scheduler.notify_probe import PROBE_PREFIX, NotifyProbe
from scheduler.service import Service


def test_a_token_heard_in_time_says_notifications_arrive():
    probe = NotifyProbe(every=30, timeout=10)
    assert probe.ok is None and probe.due(0.0)
    token = probe.start(0.0)
    assert token.startswith(PROBE_PREFIX) and not probe.due(100.0)  # one token out at a time
    probe.heard("probe:someone-else", 0.1)  # another replica's token on the same channel
    assert probe.ok is None
    probe.heard(token, 0.25)
    assert probe.ok is True and probe.last_delay == 0.25
    assert not probe.due(29.0) and probe.due(30.0)


def test_a_token_unheard_past_the_timeout_says_they_do_not_and_a_later_one_mends_it():
    probe = NotifyProbe(every=1, timeout=5)
    token = probe.start(0.0)
    probe.judge(5.0)
    assert probe.ok is None  # not yet past the bound
    probe.judge(5.1)
    assert probe.ok is False
    probe.heard(token, 6.0)  # judged already: a late token changes nothing
    assert probe.ok is False and probe.heard_total == 0
    again = probe.start(7.0)
    probe.heard(again, 7.01)
    assert probe.ok is True and probe.sent_total == 2 and probe.heard_total == 1


def test_a_cancelled_token_is_not_judged():
    probe = NotifyProbe(every=1, timeout=1)
    probe.start(0.0)
    probe.cancel()  # the listener went away, or the NOTIFY could not be sent
    probe.judge(100.0)
    assert probe.ok is None and probe.due(100.0)


class ProbedService(Service):
    name = "dispatcher"

    def __init__(self, ok: bool | None) -> None:
        super().__init__()
        self.probe = NotifyProbe(every=1, timeout=1)
        self.probe.ok = ok
        self.health.last_round_at = 999_999.0

    def details(self) -> dict[str, object]:
        return self.probe.report()


def test_healthz_shows_the_probe_and_warns_without_failing():
    healthy, report = health_report([ProbedService(False)], True, 1_000_000.0, 500, 500)
    assert healthy and report["status"] == "ok"  # polling keeps jobs moving: a warning, not a 503
    assert report["services"]["dispatcher"]["notifications"] == "not arriving"  # type: ignore[index]
    assert len(report["warnings"]) == 1 and "JOBS_LISTEN_DATABASE_URL" in report["warnings"][0]  # type: ignore[index]
    healthy, report = health_report([ProbedService(True)], True, 1_000_000.0, 500, 500)
    assert report["services"]["dispatcher"]["notifications"] == "arriving"  # type: ignore[index]
    assert report["warnings"] == []
