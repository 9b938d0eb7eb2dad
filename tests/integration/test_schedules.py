"""Schedules against the real database: the API and CLI, code sync, the cron service driven by
a FrozenClock (misfire policies, DST, exactly-once under competing rounds), lateness."""

from __future__ import annotations

import json
import threading
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from click.testing import CliRunner
from sqlalchemy import text

from scheduler.cron import FOLLOWER_POLL_SECONDS, CronService
from shared import schedules as api
from shared.cli.schedules import schedules as schedules_cli
from shared.clock import FrozenClock
from shared.errors import NotFound, ScheduleInvalid
from shared.jobtypes.registry import registry
from shared.settings import get_settings

UTC = timezone.utc
T0 = datetime(2026, 5, 1, 12, 0, 0, tzinfo=UTC)


def service(database, clock, declared=()) -> CronService:
    return CronService(database, get_settings(), registry, clock, declared=list(declared))


def fires(db, name: str) -> list[tuple[datetime, bool]]:
    """(fire_time, misfired) of a schedule's cron jobs, oldest first."""
    with db.session() as s:
        rows = s.execute(text(
            "SELECT j.fire_time, j.metadata FROM jobs j JOIN schedules s ON s.id = j.schedule_id "
            "WHERE s.name = :n AND j.fire_time IS NOT NULL ORDER BY j.fire_time"), {"n": name}).all()
    return [(r.fire_time, bool(r.metadata.get("misfired"))) for r in rows]


def step_to_next_fire(db, clock: FrozenClock, cron: CronService) -> datetime:
    """What the real service does: sleep until the earliest next fire, then run a round."""
    with db.session() as s:
        due = s.execute(text("SELECT min(next_fire_at) FROM schedules WHERE enabled")).scalar()
    clock.set(due)
    cron.tick()
    return due


# -- API --------------------------------------------------------------------------------------

def test_add_change_enable_disable_run_now_and_delete(db):
    clock = FrozenClock(T0)
    row = api.add_schedule("every-5-min", "test.record", "*/5 * * * *", payload={"key": "k"}, clock=clock)
    assert (row.source, row.queue, row.misfire_policy, row.next_fire_at) == ("api", "default", "run_once", T0 + timedelta(minutes=5))
    assert [r.name for r in api.list_schedules()] == ["every-5-min"]

    changed = api.set_cron("every-5-min", "0 9 * * *", "Europe/Berlin", clock=clock)
    assert (changed.cron, changed.timezone, changed.next_fire_at) == ("0 9 * * *", "Europe/Berlin", datetime(2026, 5, 2, 7, tzinfo=UTC))

    assert api.disable_schedule("every-5-min").enabled is False
    clock.advance(timedelta(days=3))  # disabled for three days: no misfires when it comes back
    enabled = api.enable_schedule("every-5-min", clock=clock)
    assert enabled.enabled and enabled.next_fire_at == datetime(2026, 5, 5, 7, tzinfo=UTC)

    job_id = api.run_schedule_now("every-5-min")
    with db.session() as s:
        job = s.execute(text("SELECT * FROM jobs WHERE id = :i"), {"i": job_id}).mappings().one()
    assert (job["type"], job["state"], job["payload"], job["fire_time"]) == ("test.record", "queued", {"key": "k"}, None)
    assert job["schedule_id"] == row.id and job["metadata"] == {"schedule": "every-5-min", "trigger": "manual"}

    api.delete_schedule("every-5-min")
    assert api.list_schedules() == []
    with db.session() as s:  # the job it made stays, unlinked
        assert s.execute(text("SELECT schedule_id FROM jobs WHERE id = :i"), {"i": job_id}).scalar() is None
    with pytest.raises(NotFound, match="no schedule named 'every-5-min'"):
        api.delete_schedule("every-5-min")


@pytest.mark.parametrize("overrides, field, words", [
    ({"job_type": "test.recrod"}, "job_type", "did you mean 'test.record'"),
    ({"cron": "61 * * * *"}, "cron", "out of range"),
    ({"cron": "* * *"}, "cron", "has 3 fields"),
    ({"timezone": "Europe/Berln"}, "timezone", "unknown time zone 'Europe/Berln'"),
    ({"payload": {"kee": "x"}}, "payload", "payload for test.record is invalid"),
    ({"queue": "nowhere"}, "queue", "unknown queue 'nowhere'"),
    ({"name": "taken"}, "name", "a schedule named 'taken' exists"),
    ({"name": "bad name!"}, "name", "must be 1-200 letters"),
    ({"misfire": "sometimes"}, "misfire", "misfire must be one of skip, run_once, catch_up"),
    ({"catch_up_limit": 0}, "catch_up_limit", "catch_up_limit must be an integer from 1"),
    ({"priority": 12}, "priority", "priority must be an integer from 0 to 9"),
    ({"jitter": -1}, "jitter", "jitter must be from 0"),
])
def test_bad_definitions_are_refused_naming_the_field_and_nothing_is_written(db, overrides, field, words):
    api.add_schedule("taken", "test.record", "* * * * *", payload={"key": "k"})
    args = {"name": "new", "job_type": "test.record", "cron": "* * * * *", "payload": {"key": "k"}, **overrides}
    with pytest.raises(ScheduleInvalid) as refused:
        api.add_schedule(args.pop("name"), args.pop("job_type"), args.pop("cron"), **args)
    assert refused.value.field == field and words in str(refused.value)
    assert [r.name for r in api.list_schedules()] == ["taken"]


def test_sync_writes_code_schedules_keeps_operator_choices_and_leaves_api_ones_alone(db):
    clock = FrozenClock(T0)
    code = api.define("test.record", cron="0 * * * *", payload={"key": "hourly"}, name="hourly")
    clash = api.define("test.record", cron="0 * * * *", payload={"key": "x"}, name="clash")
    api.add_schedule("clash", "test.record", "*/5 * * * *", payload={"key": "api"})
    assert api.sync_declared([code, clash], clock=clock) == {"hourly": "created", "clash": "conflict"}
    assert api.get_schedule("clash").cron == "*/5 * * * *"  # the API schedule is untouched

    api.disable_schedule("hourly")
    clock.advance(timedelta(minutes=30))  # a restart half an hour later: same code
    assert api.sync_declared([code], clock=clock) == {"hourly": "unchanged"}
    row = api.get_schedule("hourly")
    assert row.enabled is False and row.next_fire_at == T0 + timedelta(hours=1) and row.source == "code"

    changed = api.define("test.record", cron="30 * * * *", payload={"key": "hourly"}, name="hourly")
    assert api.sync_declared([changed], clock=clock) == {"hourly": "updated"}
    row = api.get_schedule("hourly")
    assert row.cron == "30 * * * *" and row.next_fire_at == T0 + timedelta(minutes=30, hours=1)

    elsewhere = api.define("test.record", cron="0 * * * *", payload={"key": "x"}, name="elsewhere", queue="nowhere")
    assert api.sync_declared([elsewhere], clock=clock)["elsewhere"].startswith("invalid: unknown queue 'nowhere'")


def test_schedule_declarations_are_checked_when_declared():
    with pytest.raises(ScheduleInvalid, match="unknown job type 'no.such'"):
        api.schedule("no.such", cron="* * * * *")
    first = api.schedule("test.record", cron="0 0 * * *", payload={"key": "d"}, name="decl-once")
    assert api.schedule("test.record", cron="0 0 * * *", payload={"key": "d"}, name="decl-once") == first
    with pytest.raises(ScheduleInvalid, match="declared twice, differently"):
        api.schedule("test.record", cron="0 1 * * *", payload={"key": "d"}, name="decl-once")


# -- the cron service -------------------------------------------------------------------------

def test_each_fire_makes_one_job_at_its_time(db):
    clock = FrozenClock(T0)
    api.add_schedule("per-second", "test.record", "* * * * * *", payload={"key": "s"}, clock=clock)
    cron = service(db, clock)
    for _ in range(10):
        step_to_next_fire(db, clock, cron)
        cron.tick()  # a repeated round adds nothing
    assert fires(db, "per-second") == [(T0 + timedelta(seconds=s), False) for s in range(1, 11)]
    with db.session() as s:
        late = s.execute(text("SELECT max(created_at - fire_time) FROM jobs")).scalar()
        assert late == timedelta(0)
        assert s.execute(text("SELECT count(*) FROM jobs WHERE state <> 'queued' OR payload <> '{\"key\": \"s\"}'")).scalar() == 0
    assert api.get_schedule("per-second").last_fire_at == T0 + timedelta(seconds=10)


def test_competing_rounds_make_each_fire_exactly_once(db, own_database):
    clock = FrozenClock(T0)
    for n in range(5):
        api.add_schedule(f"s{n}", "test.record", "* * * * * *", payload={"key": str(n)}, clock=clock)
    replicas = [service(db, clock), service(own_database, clock), service(db, clock)]
    for second in range(1, 21):
        clock.set(T0 + timedelta(seconds=second, milliseconds=500))
        barrier = threading.Barrier(len(replicas))

        def round_(cron: CronService) -> None:
            barrier.wait()
            cron.tick()

        threads = [threading.Thread(target=round_, args=(r,)) for r in replicas]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    # A stale replica (its schedules' next fire rewound, as after a split brain) adds nothing either.
    with db.session() as s:
        s.execute(text("UPDATE schedules SET next_fire_at = :t"), {"t": T0 + timedelta(seconds=1)})
    service(own_database, clock).tick()
    for n in range(5):
        assert fires(db, f"s{n}") == [(T0 + timedelta(seconds=s), False) for s in range(1, 21)]


class RecordedStop(threading.Event):
    """A stop event whose waits return at once and are remembered: how long the service asked
    to sleep is read, not measured, so the figures are exact."""

    def __init__(self) -> None:
        super().__init__()
        self.waits: list[float | None] = []

    def wait(self, timeout: float | None = None) -> bool:
        self.waits.append(timeout)
        return self.is_set()


def test_the_service_sleeps_until_the_next_fire_not_a_fixed_poll(db):
    clock = FrozenClock(T0 + timedelta(milliseconds=750))
    api.add_schedule("w", "test.record", "* * * * * *", payload={"key": "w"}, clock=clock)
    cron, stop = service(db, clock), RecordedStop()
    cron.tick()
    cron.wait(stop, 0)  # after a round: until the next fire, 12:00:01
    clock.advance(0.1)
    cron.tick()
    cron.wait(stop, 0)  # the same fire, seen 100 ms later on the clock
    cron.wait(stop, 0)  # then as a follower (no round): its poll
    assert stop.waits == [pytest.approx(0.25, abs=1e-6), pytest.approx(0.15, abs=1e-6), FOLLOWER_POLL_SECONDS]


@pytest.mark.parametrize("policy, limit, expected_minutes", [
    ("skip", 1, [(0, False), (10, False)]),
    ("run_once", 1, [(0, False), (9, True), (10, False)]),
    ("catch_up", 3, [(0, False), (7, True), (8, True), (9, True), (10, False)]),
])
def test_misfire_policy_after_an_outage(db, policy, limit, expected_minutes):
    clock = FrozenClock(T0 - timedelta(seconds=1))
    api.add_schedule("m", "test.record", "* * * * *", payload={"key": "m"}, misfire=policy, catch_up_limit=limit, clock=clock)
    cron = service(db, clock)
    step_to_next_fire(db, clock, cron)  # 12:00 fires on time
    clock.set(T0 + timedelta(minutes=10, seconds=1))  # the scheduler was down until 12:10:01
    cron.tick()
    assert fires(db, "m") == [(T0 + timedelta(minutes=m), missed) for m, missed in expected_minutes]
    assert api.get_schedule("m").next_fire_at == T0 + timedelta(minutes=11)
    assert cron.missed_total == 1


@pytest.mark.parametrize("tz, day, expected_hourly", [
    ("Europe/Berlin", (2026, 3, 29), 23),
    ("Europe/Berlin", (2026, 10, 25), 25),
    ("America/New_York", (2026, 3, 8), 23),
    ("America/New_York", (2026, 11, 1), 25),
])
def test_dst_days_through_the_service(db, tz, day, expected_hourly):
    """Midnight to midnight local on a transition day: the daily 02:30 job fires once, the
    hourly one once per real hour; every fire on time."""
    midnight = datetime(*day, tzinfo=ZoneInfo(tz))
    start, end = midnight.astimezone(UTC), (midnight + timedelta(days=1)).astimezone(UTC)
    clock = FrozenClock(start - timedelta(seconds=1))
    api.add_schedule("daily", "test.record", "30 2 * * *", timezone=tz, payload={"key": "d"}, clock=clock)
    api.add_schedule("hourly", "test.record", "0 * * * *", timezone=tz, payload={"key": "h"}, clock=clock)
    cron = service(db, clock)
    while step_to_next_fire(db, clock, cron) < end - timedelta(minutes=1):
        pass
    daily = [f for f, _ in fires(db, "daily") if f < end]
    hourly = [f for f, _ in fires(db, "hourly") if f < end]
    assert len(daily) == 1 and len(hourly) == expected_hourly
    assert all(b - a == timedelta(hours=1) for a, b in zip(hourly, hourly[1:]))
    assert not any(missed for _, missed in fires(db, "daily") + fires(db, "hourly"))


def test_jitter_spreads_run_at_but_not_the_fire_time(db):
    clock = FrozenClock(T0)
    api.add_schedule("j", "test.record", "* * * * *", payload={"key": "j"}, jitter=30, clock=clock)
    cron = service(db, clock)
    for _ in range(5):
        step_to_next_fire(db, clock, cron)
    with db.session() as s:
        rows = s.execute(text("SELECT fire_time, run_at, state, created_at FROM jobs ORDER BY fire_time")).all()
    offsets = [(r.run_at - r.fire_time).total_seconds() for r in rows]
    assert len(rows) == 5 and all(0 <= o < 30 for o in offsets) and len(set(offsets)) > 1
    assert all(r.created_at == r.fire_time and r.state == ("scheduled" if r.run_at > r.fire_time else "queued") for r in rows)


def test_a_schedule_written_around_the_api_is_skipped_or_parked_with_a_reason(db, caplog):
    clock = FrozenClock(T0)
    with db.session() as s:
        s.execute(text(
            "INSERT INTO schedules (name, cron, job_type, queue, next_fire_at) VALUES "
            "('unknown-type', '* * * * *', 'no.such', 'default', :t), ('bad-cron', 'every minute', 'test.record', 'default', :t)"
        ), {"t": T0})
    service(db, clock).tick()
    assert fires(db, "unknown-type") == [] and fires(db, "bad-cron") == []
    assert api.get_schedule("unknown-type").next_fire_at == T0 + timedelta(minutes=1)
    assert api.get_schedule("bad-cron").next_fire_at is None
    assert "unknown job type 'no.such'" in caplog.text and "bad-cron has an invalid definition" in caplog.text


def test_cron_lateness_reports_enqueued_minus_due(db):
    api.add_schedule("late", "test.record", "* * * * * *", payload={"key": "l"})
    with db.session() as s:
        sid = s.execute(text("SELECT id FROM schedules")).scalar()
        for ms in range(100):  # 0..99 ms late
            s.execute(text(
                "INSERT INTO jobs (type, payload, schedule_id, fire_time, created_at) "
                "VALUES ('test.record', '{\"key\": \"l\"}', :s, :f, :c)"),
                {"s": sid, "f": T0 + timedelta(seconds=ms), "c": T0 + timedelta(seconds=ms, milliseconds=ms)})
    figures = api.cron_lateness("late")
    assert (figures.fires, figures.max_ms) == (100, pytest.approx(99))
    assert figures.p50_ms == pytest.approx(49.5) and figures.p99_ms == pytest.approx(98.01)
    assert api.cron_lateness(since=T0 + timedelta(seconds=90)).fires == 10
    assert api.cron_lateness("other").fires == 0


# -- CLI --------------------------------------------------------------------------------------

def test_cli_manages_schedules_and_refuses_bad_input_clearly(db):
    runner = CliRunner()

    def run(*args: str) -> str:
        result = runner.invoke(schedules_cli, list(args), catch_exceptions=False)
        assert result.exit_code == 0, result.output
        return result.output

    assert "added nightly: 30 2 * * * (Europe/Berlin)" in run(
        "add", "nightly", "--type", "test.record", "--cron", "30 2 * * *", "--timezone", "Europe/Berlin",
        "--payload", '{"key": "n"}', "--misfire", "skip")
    assert "changed nightly: 0 3 * * *" in run("set-cron", "nightly", "0 3 * * *")
    assert "disabled nightly" in run("disable", "nightly")
    assert "enabled nightly" in run("enable", "nightly")
    assert run("run-now", "nightly").startswith("enqueued job ")
    listed = json.loads(run("list", "--json"))
    assert [(s["name"], s["cron"], s["misfire_policy"], s["enabled"]) for s in listed] == [("nightly", "0 3 * * *", "skip", True)]
    assert "deleted nightly" in run("delete", "nightly", "--yes")

    refused = runner.invoke(schedules_cli, ["add", "x", "--type", "test.record", "--cron", "* * *", "--payload", '{"key": "x"}'])
    assert refused.exit_code == 2 and "cron '* * *' has 3 fields" in refused.output
    refused = runner.invoke(schedules_cli, ["set-cron", "missing", "* * * * *"])
    assert refused.exit_code == 1 and "no schedule named 'missing'" in refused.output
    assert "no schedules" in run("list")
