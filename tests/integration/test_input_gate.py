"""Property tests of the input gate (shared/inputs.py) against the real database.

Hypothesis throws hostile input at enqueue, enqueue_many, the control API and schedules: NUL
and lone surrogates in text and keys, NaN and Infinity, integers past 64 bits, wrong Python
types, out-of-range numbers, deep nesting, long strings. For every input exactly one of:

- accepted, and the row read back equals what was given (after the payload model's own
  normalization and jsonb's number notation), or
- refused with a `ValidationError` naming a field the test made hostile (or, for ids and
  names of the right shape, `NotFound` / `InvalidTransition`), nothing written, and the
  caller's transaction still usable: `SELECT 1` runs in it after the refusal, and it commits.

Each test draws which arguments are hostile; valid arguments come from strategies that only
make valid values, so a refusal must name one of the hostile ones.
"""

from __future__ import annotations

import json
import math
import re
from datetime import datetime, timedelta, timezone
from typing import Any, Callable
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import Field
from sqlalchemy import text

from shared import control, inputs
from shared import schedules as api
from shared.clock import FrozenClock
from shared.enqueue import enqueue, enqueue_many, enqueue_now
from shared.errors import (
    InputInvalid, InvalidTransition, NotFound, PayloadInvalid, PayloadTooLarge, PlatformError, UnknownJobType,
    UnknownQueue, ValidationError,
)
from shared.jobtypes.registry import Payload, declare, registry
from shared.models.states import MisfirePolicy

UTC = timezone.utc
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
QUEUES = ("high", "default", "low", "bulk")


class Anything(Payload):
    """A payload with free-form JSON: the gate, not the model, must refuse what cannot be stored."""

    data: Any = None
    number: float = 0.0
    label: str = ""
    items: dict[str, Any] = Field(default_factory=dict)


ANYTHING = declare("gate.anything", Anything)


def gate_settings(examples: int) -> Callable[[Any], Any]:
    return settings(
        max_examples=examples, deadline=None, database=None, derandomize=False,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                               HealthCheck.data_too_large, HealthCheck.filter_too_much],
    )


# -- strategies ------------------------------------------------------------------------------

NASTY_TEXT = [
    "\x00", "a\x00b", "\ud800", "x\udfff", "\udc00\ud800", "", " ", "\n", "'; DROP TABLE jobs; --", "\\u0000",
    "é", "😀", "\u2028", "\ufeff", "\uffff", "default\n", "DEFAULT", "a" * 64,
]
clean_text = st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\x00"), max_size=20)
any_text = st.one_of(
    st.text(st.characters(exclude_categories=()), max_size=20),
    st.sampled_from(NASTY_TEXT),
    st.builds(lambda n, c: c * n, st.sampled_from([300, 1100, 70_000, 1_100_000]), st.sampled_from(["x", "é", "\x00"])),
)
valid_floats = st.floats(allow_nan=False, allow_infinity=False)
valid_ints = st.integers(min_value=inputs.JSON_INT_MIN, max_value=inputs.JSON_INT_MAX)


def json_values(keys: st.SearchStrategy[Any], leaves: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.recursive(
        leaves, lambda children: st.lists(children, max_size=4) | st.dictionaries(keys, children, max_size=4),
        max_leaves=12,
    )


def nested(depth: int) -> Any:
    value: Any = "bottom"
    for level in range(depth):
        value = {"n": value} if level % 2 else [value]
    return value


valid_json = json_values(clean_text, st.one_of(st.none(), st.booleans(), valid_ints, valid_floats, clean_text))
valid_object = st.dictionaries(clean_text, valid_json, max_size=4)
hostile_leaves = st.one_of(
    st.none(), st.booleans(), st.integers(), st.integers(-(2**70), 2**70), st.floats(), any_text,
    st.sampled_from([float("nan"), float("inf"), -float("inf"), 2**64, -(2**63) - 1, 10**400, 1e300]),
    st.just(object()), st.sets(st.integers(), max_size=2), st.datetimes(),
)
hostile_keys = st.one_of(any_text, st.integers(), st.none(), st.booleans(), st.floats())
hostile_json = st.one_of(
    json_values(hostile_keys, hostile_leaves),
    st.integers(inputs.JSON_MAX_DEPTH - 3, inputs.JSON_MAX_DEPTH + 3).map(nested),
    st.just(nested(50_000)),
    st.sampled_from([[1e300] * 5_000, ["x" * 1000] * 300, {"k" * 100_000: 1}]),
)
hostile_object = st.one_of(
    st.dictionaries(hostile_keys, hostile_json, max_size=4),
    hostile_json,  # not an object at all, mostly
    st.builds(lambda v: {"data": v}, hostile_json),
)
# Everything the gate should refuse as an option value, or accept when it happens to fit.
hostile_scalar = st.one_of(
    st.integers(), st.integers(2**31 - 3, 2**31 + 3), st.integers(2**63 - 2, 2**64 + 2), st.floats(),
    st.sampled_from([float("nan"), float("inf"), -float("inf"), 1e12, -1e-9, 1e-9, 0, -1, 0.5, True, False, 10**30]),
    any_text, st.just(object()), st.lists(st.integers(), max_size=2), st.timedeltas(), st.datetimes(),
    st.just(b"bytes"), st.sampled_from(["5", "2026-01-01", "1e3", "nan"]),
)
hostile_datetimes = st.one_of(
    st.datetimes(),  # naive
    st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=st.just(UTC)),
    st.sampled_from([datetime.min.replace(tzinfo=UTC), datetime.max.replace(tzinfo=UTC),
                     datetime(9999, 12, 31, 23, tzinfo=timezone(timedelta(hours=-5))), "2026-01-01"]),
    hostile_scalar,
)
valid_datetimes = st.datetimes(
    min_value=datetime(2000, 1, 2), max_value=datetime(9999, 12, 29),
    timezones=st.sampled_from([UTC, ZoneInfo("Europe/Berlin"), timezone(timedelta(hours=-12)), timezone(timedelta(hours=14))]),
)


def seconds_in(lo: float, hi: float) -> st.SearchStrategy[Any]:
    return st.one_of(
        st.floats(lo, hi), st.integers(math.ceil(lo), math.floor(hi)),
        st.floats(lo, hi).map(lambda s: timedelta(seconds=s)).filter(lambda d: lo <= d.total_seconds() <= hi),
    )


# -- reading back ----------------------------------------------------------------------------

def same(given: Any, read: Any) -> bool:
    """Equal after jsonb: numbers in plain notation (1e16 comes back as an int), tuples as lists."""
    if given is None or isinstance(given, bool):
        return read is given
    if isinstance(given, float):
        return isinstance(read, (int, float)) and not isinstance(read, bool) and float(read) == given
    if isinstance(given, int):
        return type(read) is int and read == given
    if isinstance(given, str):
        return read == given
    if isinstance(given, (list, tuple)):
        return isinstance(read, list) and len(read) == len(given) and all(same(g, r) for g, r in zip(given, read))
    if isinstance(given, dict):
        return isinstance(read, dict) and set(read) == set(given) and all(same(given[k], read[k]) for k in given)
    return False


def snapshot(session: Any) -> tuple[Any, ...]:
    """Every row the calls under test could write."""
    return tuple(
        session.execute(text(f"SELECT count(*), md5(coalesce(string_agg(t::text, '|' ORDER BY t::text), '')) FROM {table} t")).one()
        for table in ("jobs", "queues", "schedules", "job_dependencies")
    )


def root(field: str | None) -> str:
    match = re.match(r"[a-z_]+", field or "")
    return match.group() if match else ""


def refused_properly(exc: PlatformError, hostile: set[str], also: set[str] = frozenset()) -> None:  # type: ignore[assignment]
    assert isinstance(exc, ValidationError), f"{type(exc).__name__}: {exc}"
    assert exc.field, f"no field named: {exc!r}"
    assert root(exc.field) in hostile | also, f"{exc.field!r} refused, but the hostile arguments were {sorted(hostile)}: {exc}"


def pick(data: st.DataObject, arguments: tuple[str, ...]) -> set[str]:
    return data.draw(st.sets(st.sampled_from(arguments), max_size=3), label="hostile")


COUNTS: dict[str, int] = {}


def tally(name: str) -> None:
    COUNTS[name] = COUNTS.get(name, 0) + 1


# -- enqueue ---------------------------------------------------------------------------------

ENQUEUE_OPTIONS = ("queue", "priority", "run_at", "delay", "max_attempts", "timeout", "metadata", "unique_key",
                   "unique_for", "depends_on")


def valid_payload(type_name: str) -> st.SearchStrategy[Any]:
    if type_name == "gate.anything":
        return st.fixed_dictionaries({}, optional={
            "data": valid_json, "number": valid_floats, "label": clean_text, "items": valid_object,
        })
    return st.fixed_dictionaries({"key": clean_text})


def option_strategies(parents: list[int]) -> dict[str, tuple[st.SearchStrategy[Any], st.SearchStrategy[Any]]]:
    """argument -> (valid values, hostile values)."""
    return {
        "queue": (st.sampled_from(QUEUES), st.one_of(any_text, hostile_scalar, st.just("nope"))),
        "priority": (st.integers(0, 9), hostile_scalar),
        "run_at": (valid_datetimes, hostile_datetimes),
        "delay": (seconds_in(0, inputs.DELAY_MAX_SECONDS), hostile_scalar),
        "max_attempts": (st.integers(1, inputs.MAX_ATTEMPTS_MAX), hostile_scalar),
        "timeout": (seconds_in(inputs.TIMEOUT_MIN_SECONDS, inputs.TIMEOUT_MAX_SECONDS), hostile_scalar),
        "metadata": (valid_object, hostile_object),
        "unique_key": (st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\x00"), min_size=1, max_size=30), st.one_of(any_text, hostile_scalar)),
        "unique_for": (seconds_in(0, inputs.UNIQUE_FOR_MAX_SECONDS), hostile_scalar),
        "depends_on": (st.lists(st.sampled_from(parents), max_size=3),
                       st.one_of(st.lists(hostile_scalar, max_size=3), hostile_scalar, st.lists(st.integers(10**12, 10**13), min_size=1, max_size=2))),
    }


def draw_options(data: st.DataObject, hostile: set[str], strategies: dict[str, Any], names: tuple[str, ...]) -> dict[str, Any]:
    options: dict[str, Any] = {}
    for name in names:
        valid, bad = strategies[name]
        if name in hostile:
            options[name] = data.draw(bad, label=name)
        elif data.draw(st.booleans(), label=f"give {name}"):
            options[name] = data.draw(valid, label=name)
    if "run_at" in options and "delay" in options and not hostile & {"run_at", "delay"}:
        del options["delay"]  # both valid together is a refusal of its own (checked below)
    return options


def check_row(session: Any, job_id: int, declared: Any, given_payload: Any, options: dict[str, Any]) -> None:
    row = session.execute(text(
        "SELECT type, queue, state, priority, payload, metadata, max_attempts, timeout_seconds, run_at, unique_key,"
        " unique_period_seconds, octet_length(payload::text) AS stored FROM jobs WHERE id = :i"), {"i": job_id}).one()
    model = declared.payload.model_validate(given_payload)
    normalized = json.loads(model.model_dump_json())
    assert row.type == declared.name
    assert same(normalized, row.payload), (normalized, row.payload)
    assert inputs.stored_size(normalized) == row.stored  # the gate measures what the database measures
    assert same(options.get("metadata") or {}, row.metadata), (options.get("metadata"), row.metadata)
    assert row.queue == options.get("queue", declared.queue)
    assert row.priority == options.get("priority", declared.priority)
    assert row.max_attempts == options.get("max_attempts", declared.max_attempts or 20)
    timeout = options.get("timeout")
    assert row.timeout_seconds == (timeout.total_seconds() if isinstance(timeout, timedelta) else timeout)
    if "run_at" in options:
        assert row.run_at == options["run_at"].astimezone(UTC)  # an instant: a repeated wall time compares by fold 0
    elif "delay" in options:
        delay = options["delay"]
        assert row.run_at == NOW + (delay if isinstance(delay, timedelta) else timedelta(seconds=delay))
    else:
        assert row.run_at == NOW
    assert row.state in ("scheduled" if row.run_at > NOW else "queued", "waiting", "cancelled")
    if options.get("unique_key"):
        assert row.unique_key == options["unique_key"]
    unique_for = options.get("unique_for", 0.0)
    if row.unique_key is not None:  # the period only matters to a unique job
        assert row.unique_period_seconds == (unique_for.total_seconds() if isinstance(unique_for, timedelta) else unique_for)


def test_enqueue_accepts_exactly_or_refuses_naming_the_field(db):
    COUNTS.clear()
    clock = FrozenClock(NOW)
    with db.session() as session:
        parents = [enqueue(session, "test.record", {"key": f"parent {i}"}, clock=clock).id for i in range(3)]
    strategies = option_strategies(parents)
    arguments = ("job_type", "payload", *ENQUEUE_OPTIONS)

    @gate_settings(900)
    @given(st.data())
    def attempt(data: st.DataObject) -> None:
        hostile = pick(data, arguments)
        type_name = data.draw(st.sampled_from(["test.record", "gate.anything", "test.unique"]), label="type")
        job_type: Any = type_name if data.draw(st.booleans()) else registry.get(type_name)
        if "job_type" in hostile:
            job_type = data.draw(st.one_of(any_text, hostile_scalar, st.just("test.recrod")), label="job_type")
        payload = data.draw(hostile_object if "payload" in hostile else valid_payload(type_name), label="payload")
        options = draw_options(data, hostile, strategies, ENQUEUE_OPTIONS)
        # Combinations refused on purpose even when each value is valid.
        also = set()
        if "depends_on" in options and (options.get("unique_key") or type_name == "test.unique"):
            also.add("unique_key")
        if "run_at" in options and "delay" in options:
            also.add("run_at")
        with db.session() as session:
            before = snapshot(session)
            try:
                job = enqueue(session, job_type, payload, clock=clock, **options)
            except PlatformError as exc:
                refused_properly(exc, hostile | {"type"} if "job_type" in hostile else hostile, also)
                assert snapshot(session) == before, "a refusal wrote something"
                assert session.execute(text("SELECT 1")).scalar() == 1
                tally("enqueue refused")
                return
            assert "run_at" not in also, "run_at and delay together were accepted"
            assert "unique_key" not in also or not options["depends_on"], "a unique dependent job was accepted"
            if job.duplicate:
                assert snapshot(session)[0][0] == before[0][0]
                tally("enqueue duplicate")
                return
            assert snapshot(session)[0][0] == before[0][0] + 1
            check_row(session, job.id, registry.get(type_name), payload, options)
            tally("enqueue accepted")

    attempt()
    print("enqueue:", COUNTS)


def test_enqueue_many_accepts_exactly_or_refuses_naming_the_field(db):
    COUNTS.clear()
    clock = FrozenClock(NOW)
    strategies = option_strategies([1])
    names = ("queue", "priority", "run_at", "delay", "max_attempts", "timeout", "metadata")
    arguments = ("payloads", *names)

    @gate_settings(450)
    @given(st.data())
    def attempt(data: st.DataObject) -> None:
        hostile = pick(data, arguments)
        type_name = data.draw(st.sampled_from(["test.record", "gate.anything"]), label="type")
        payloads: Any = data.draw(st.lists(valid_payload(type_name), max_size=4), label="payloads")
        if "payloads" in hostile:
            if data.draw(st.booleans()):
                bad = data.draw(hostile_object, label="bad payload")
                payloads.insert(data.draw(st.integers(0, len(payloads))), bad)
            else:
                payloads = data.draw(st.one_of(hostile_scalar, st.none(), hostile_object), label="payloads")
        options = draw_options(data, hostile, strategies, names)
        also = {"run_at"} if "run_at" in options and "delay" in options else set()
        with db.session() as session:
            before = snapshot(session)
            try:
                ids = enqueue_many(session, type_name, payloads, clock=clock, **options)
            except PlatformError as exc:
                refused_properly(exc, hostile, also)
                assert snapshot(session) == before, "a refusal wrote something"
                assert session.execute(text("SELECT 1")).scalar() == 1
                tally("enqueue_many refused")
                return
            assert not also
            assert len(ids) == len(payloads) and snapshot(session)[0][0] == before[0][0] + len(ids)
            for job_id, payload in zip(ids, payloads):
                check_row(session, job_id, registry.get(type_name), payload, options)
            tally("enqueue_many accepted")

    attempt()
    print("enqueue_many:", COUNTS)


# -- the control API -------------------------------------------------------------------------

def expected_reason(reason: str) -> str:
    cleaned = "".join("\ufffd" if 0xD800 <= ord(c) <= 0xDFFF else c for c in reason.replace("\x00", ""))
    return cleaned if len(cleaned) <= 1000 else cleaned[:999] + "\u2026"


def test_control_api_accepts_exactly_or_refuses_naming_the_field(db):
    COUNTS.clear()
    with db.session() as session:
        ids = [enqueue(session, "test.record", {"key": f"control {i}"}).id for i in range(6)]
    hostile_ids = st.one_of(hostile_scalar, st.integers(-(2**64), 2**64), st.sampled_from([True, False, "1", 1.0, None]))
    valid_ids = st.one_of(st.sampled_from(ids), st.integers(1, inputs.JOB_ID_MAX))
    valid_reasons = st.one_of(st.text(st.characters(exclude_categories=()), max_size=30), st.sampled_from(NASTY_TEXT),
                              st.just("r" * 5000))
    operations = ("get_job", "job_logs", "retry_job", "cancel_job", "pause_queue", "resume_queue", "set_queue_limits")

    @gate_settings(500)
    @given(st.data())
    def attempt(data: st.DataObject) -> None:
        operation = data.draw(st.sampled_from(operations), label="operation")
        hostile = pick(data, ("job_id", "limit", "reason", "name", "concurrency", "rate", "window"))
        job_id = data.draw(hostile_ids if "job_id" in hostile else valid_ids, label="job_id")
        name = data.draw(st.one_of(any_text, hostile_scalar) if "name" in hostile else st.sampled_from(QUEUES), label="name")
        calls: dict[str, Callable[[], Any]] = {
            "get_job": lambda: control.get_job(job_id),
            "retry_job": lambda: control.retry_job(job_id),
            "pause_queue": lambda: control.pause_queue(name),
            "resume_queue": lambda: control.resume_queue(name),
        }
        limit = data.draw(hostile_scalar if "limit" in hostile else st.integers(1, 10_000), label="limit")
        calls["job_logs"] = lambda: control.job_logs(job_id, limit=limit)
        reason = data.draw(st.one_of(hostile_scalar.filter(lambda v: not isinstance(v, str)), st.none()) if "reason" in hostile
                           else valid_reasons, label="reason")
        calls["cancel_job"] = lambda: control.cancel_job(job_id, reason)
        limits: dict[str, Any] = {}
        for key, valid in (("concurrency", st.integers(1, 1000)), ("window", st.integers(1, 1000)),
                           ("rate", st.tuples(st.integers(1, 1000), st.floats(0.001, 86400)))):
            if key in hostile:
                limits[key] = data.draw(st.one_of(hostile_scalar, st.tuples(hostile_scalar, hostile_scalar)), label=key)
            elif data.draw(st.booleans()):
                limits[key] = data.draw(valid, label=key)
        calls["set_queue_limits"] = lambda: control.set_queue_limits(name, **limits)
        used = {"get_job": {"job_id"}, "retry_job": {"job_id"}, "job_logs": {"job_id", "limit"},
                "cancel_job": {"job_id", "reason"}, "pause_queue": {"name"}, "resume_queue": {"name"},
                "set_queue_limits": {"name", "concurrency", "rate", "window"}}[operation]
        # A queue refused by name is reported as the field "queue".
        fields = {"queue" if f == "name" else f for f in hostile & used}
        with db.session() as caller:
            before = snapshot(caller)
            try:
                result = calls[operation]()
            except (NotFound, InvalidTransition) as exc:
                assert not isinstance(exc, ValidationError)
                assert snapshot(caller) == before
                tally(f"{operation} not found/not allowed")
            except PlatformError as exc:
                refused_properly(exc, fields)
                assert snapshot(caller) == before, "a refusal wrote something"
                tally(f"{operation} refused")
            else:
                check_control(caller, operation, result, job_id, name, reason, limits)
                tally(f"{operation} accepted")
            assert caller.execute(text("SELECT 1")).scalar() == 1

    attempt()
    print("control:", COUNTS)


def check_control(session: Any, operation: str, result: Any, job_id: Any, name: Any, reason: Any, limits: dict[str, Any]) -> None:
    # READ COMMITTED: the caller's next statement sees what the call committed.
    if operation == "get_job":
        assert result.job["id"] == job_id
    elif operation == "cancel_job":
        stored = session.execute(text("SELECT cancel_reason FROM jobs WHERE id = :i"), {"i": job_id}).scalar()
        assert stored == expected_reason(reason)
    elif operation in ("pause_queue", "resume_queue"):
        paused = session.execute(text("SELECT paused FROM queues WHERE name = :n"), {"n": name}).scalar()
        assert paused is (operation == "pause_queue")
    elif operation == "set_queue_limits":
        row = session.execute(text("SELECT concurrency_limit, rate_limit, rate_period_seconds, dispatch_window FROM queues"
                                   " WHERE name = :n"), {"n": name}).one()
        rate = limits.get("rate")
        assert row[:3] == (limits.get("concurrency"), rate[0] if rate else None, rate[1] if rate else None)
        if "window" in limits:  # None keeps the queue's window
            assert row[3] == limits["window"]


# -- schedules -------------------------------------------------------------------------------

VALID_CRONS = ["* * * * *", "*/5 * * * *", "30 2 * * *", "0 0 1 * *", "*/10 * * * * *", "@hourly", "0  9 * * 1-5"]
SCHEDULE_OPTIONS = ("timezone", "payload", "queue", "priority", "misfire", "catch_up_limit", "jitter", "enabled")


def test_schedules_accept_exactly_or_refuse_naming_the_field(db):
    COUNTS.clear()
    made = iter(range(10**6))
    strategies: dict[str, tuple[Any, Any]] = {
        "timezone": (st.sampled_from(["UTC", "Europe/Berlin", "America/New_York", "Asia/Kolkata"]),
                     st.one_of(any_text, hostile_scalar, st.sampled_from(["America", "Etc", "a" * 300, "Europe/Berln"]))),
        "payload": (valid_payload("test.record"), hostile_object),
        "queue": (st.sampled_from(QUEUES), st.one_of(any_text, hostile_scalar)),
        "priority": (st.integers(0, 9), hostile_scalar),
        "misfire": (st.sampled_from(list(MisfirePolicy)), st.one_of(any_text, hostile_scalar)),
        "catch_up_limit": (st.integers(1, 1000), hostile_scalar),
        "jitter": (st.floats(0, 86400), hostile_scalar),
        "enabled": (st.booleans(), hostile_scalar.filter(lambda v: not isinstance(v, bool))),
    }
    lookups = ("get_schedule", "enable_schedule", "disable_schedule", "delete_schedule", "run_schedule_now", "set_cron",
               "cron_lateness")

    @gate_settings(450)
    @given(st.data())
    def attempt(data: st.DataObject) -> None:
        hostile = pick(data, ("name", "job_type", "cron", *SCHEDULE_OPTIONS))
        name = f"gate-{next(made)}"
        if "name" in hostile:
            name = data.draw(st.one_of(any_text, hostile_scalar), label="name")
        job_type = data.draw(st.one_of(any_text, hostile_scalar) if "job_type" in hostile else st.just("test.record"))
        cron = data.draw(st.one_of(any_text, hostile_scalar, st.sampled_from(["61 * * * *", "* * 31 2 *", "H * * * *"]))
                         if "cron" in hostile else st.sampled_from(VALID_CRONS), label="cron")
        options = draw_options(data, hostile, strategies, SCHEDULE_OPTIONS)
        options.setdefault("payload", {"key": "k"})  # test.record has a required field
        with db.session() as caller:
            before = snapshot(caller)
            try:
                row = api.add_schedule(name, job_type, cron, **options)
            except PlatformError as exc:
                refused_properly(exc, hostile)
                assert snapshot(caller) == before, "a refusal wrote something"
                tally("add_schedule refused")
            else:
                expected_payload = json.loads(registry.get("test.record").payload.model_validate(options["payload"]).model_dump_json())
                assert row.name == name and row.cron == " ".join(cron.split())
                assert row.timezone == options.get("timezone", "UTC") and row.queue == options.get("queue", "default")
                assert row.priority == options.get("priority", 5) and row.misfire_policy == options.get("misfire", "run_once")
                assert row.catch_up_limit == options.get("catch_up_limit", 1) and row.enabled is options.get("enabled", True)
                assert row.jitter_seconds == float(options.get("jitter", 0.0))
                assert same(expected_payload, row.payload)
                tally("add_schedule accepted")
            assert caller.execute(text("SELECT 1")).scalar() == 1
        # Look-ups and changes by name: a name that cannot be stored text is refused first.
        lookup = data.draw(st.sampled_from(lookups), label="lookup")
        target = data.draw(st.one_of(any_text, hostile_scalar, st.just(name)), label="target")
        with db.session() as caller:
            before = snapshot(caller)
            try:
                if lookup == "set_cron":
                    api.set_cron(target, data.draw(st.one_of(st.sampled_from(VALID_CRONS), any_text, hostile_scalar)))
                elif lookup == "cron_lateness":
                    api.cron_lateness(target, since=data.draw(st.one_of(st.none(), valid_datetimes, hostile_datetimes)))
                else:
                    getattr(api, lookup)(target)
            except NotFound:
                assert snapshot(caller) == before
            except PlatformError as exc:
                refused_properly(exc, {"name", "cron", "since", "timezone", "payload", "job_type"})
                assert snapshot(caller) == before, "a refusal wrote something"
            assert caller.execute(text("SELECT 1")).scalar() == 1
        tally(f"{lookup} tried")

    attempt()
    print("schedules:", COUNTS)


# -- the cases seen on main, one by one ------------------------------------------------------

NAN, INF = float("nan"), float("inf")


@pytest.mark.parametrize("call, error, field", [
    (lambda s: enqueue(s, "test.record", {"key": "a\x00b"}), PayloadInvalid, "payload"),
    (lambda s: enqueue(s, "gate.anything", {"items": {"k\x00": 1}}), PayloadInvalid, "payload"),
    (lambda s: enqueue(s, "test.record", {"key": "a"}, metadata={"m": "\x00"}), InputInvalid, "metadata"),
    (lambda s: enqueue(s, "test.record", {"key": "a"}, metadata={"m": NAN}), InputInvalid, "metadata"),
    (lambda s: enqueue(s, "test.record", {"key": "a"}, metadata={"m": [INF]}), InputInvalid, "metadata"),
    (lambda s: enqueue(s, "test.record", {"key": "a"}, metadata={1: "x"}), InputInvalid, "metadata"),
    (lambda s: enqueue(s, "gate.anything", {"number": NAN}), PayloadInvalid, "payload"),
    (lambda s: enqueue(s, "gate.anything", {"number": "inf"}), PayloadInvalid, "payload"),
    (lambda s: enqueue(s, "gate.anything", {"data": {"x": [NAN]}}), PayloadInvalid, "payload"),
    (lambda s: enqueue(s, "gate.anything", {"data": 2**64}), PayloadInvalid, "payload"),
    (lambda s: enqueue(s, "gate.anything", {"data": nested(101)}), PayloadInvalid, "payload"),
    (lambda s: enqueue(s, "gate.anything", {"data": nested(100_000)}), PayloadInvalid, "payload"),
    (lambda s: enqueue(s, "gate.anything", {"data": [1e300] * 4000}), PayloadTooLarge, "payload"),
    (lambda s: enqueue(s, "test.unique", {"key": "k" * 2000}), PayloadInvalid, "payload"),
    (lambda s: enqueue(s, "test.record", {"key": "a"}, max_attempts=2**31 + 1), InputInvalid, "max_attempts"),
    (lambda s: enqueue(s, "test.record", {"key": "a"}, max_attempts=1001), InputInvalid, "max_attempts"),
    (lambda s: enqueue(s, "test.record", {"key": "a"}, run_at="2026-01-01"), InputInvalid, "run_at"),
    (lambda s: enqueue(s, "test.record", {"key": "a"}, run_at=datetime(2026, 1, 1)), InputInvalid, "run_at"),
    (lambda s: enqueue(s, "test.record", {"key": "a"}, run_at=datetime(1, 1, 1, tzinfo=UTC)), InputInvalid, "run_at"),
    (lambda s: enqueue(s, "test.record", {"key": "a"}, delay=NAN), InputInvalid, "delay"),
    (lambda s: enqueue(s, "test.record", {"key": "a"}, delay=INF), InputInvalid, "delay"),
    (lambda s: enqueue(s, "test.record", {"key": "a"}, delay=1e12), InputInvalid, "delay"),
    (lambda s: enqueue(s, "test.record", {"key": "a"}, delay="5"), InputInvalid, "delay"),
    (lambda s: enqueue(s, "test.record", {"key": "a"}, priority=True), InputInvalid, "priority"),
    (lambda s: enqueue(s, "test.record", {"key": "a"}, timeout="5"), InputInvalid, "timeout"),
    (lambda s: enqueue(s, "test.record", {"key": "a"}, timeout=1e-9), InputInvalid, "timeout"),
    (lambda s: enqueue(s, "test.record", {"key": "a"}, timeout=1e9), InputInvalid, "timeout"),
    (lambda s: enqueue(s, "test.record", {"key": "\ud800"}), PayloadInvalid, "payload"),
    (lambda s: enqueue(s, "test.record", {"key": "a"}, metadata={"\udfff": 1}), InputInvalid, "metadata"),
    (lambda s: enqueue(s, "test.record", {"key": "a"}, unique_key="\ud800"), InputInvalid, "unique_key"),
    (lambda s: enqueue(s, "test.record", {"key": "a"}, unique_key="u\x00"), InputInvalid, "unique_key"),
    (lambda s: enqueue(s, "test.record", {"key": "a"}, unique_key="u" * 1001), InputInvalid, "unique_key"),
    (lambda s: enqueue(s, "test.record", {"key": "a"}, unique_key=5), InputInvalid, "unique_key"),
    (lambda s: enqueue(s, "test.record", {"key": "a"}, unique_for=-1), InputInvalid, "unique_for"),
    (lambda s: enqueue(s, "test.record", {"key": "a"}, unique_for=INF), InputInvalid, "unique_for"),
    (lambda s: enqueue(s, "test.record", {"key": "a"}, queue="\ud800"), UnknownQueue, "queue"),
    (lambda s: enqueue(s, "test.record", {"key": "a"}, queue="default\n"), UnknownQueue, "queue"),
    (lambda s: enqueue(s, "test.record", {"key": "a"}, queue=7), UnknownQueue, "queue"),
    (lambda s: enqueue(s, "test.record", {"key": "a"}, depends_on=[2**63]), InputInvalid, "depends_on[0]"),
    (lambda s: enqueue(s, "test.record", {"key": "a"}, depends_on=[True]), InputInvalid, "depends_on[0]"),
    (lambda s: enqueue(s, "test.record", {"key": "a"}, depends_on="12"), InputInvalid, "depends_on"),
    (lambda s: enqueue(s, 42, {"key": "a"}), UnknownJobType, "type"),
    (lambda s: enqueue(s, "test.record", ""), PayloadInvalid, "payload"),
    (lambda s: enqueue_many(s, "test.record", [{"key": "a"}, {"key": "\x00"}]), PayloadInvalid, "payloads[1]"),
    (lambda s: enqueue_many(s, "test.record", {"key": "a"}), PayloadInvalid, "payloads"),
    (lambda s: enqueue_many(s, "test.record", [{"key": "a"}], delay=NAN), InputInvalid, "delay"),
])
def test_each_case_seen_on_main_is_refused_naming_the_field(db, call, error, field):
    with db.session() as session:
        before = snapshot(session)
        with pytest.raises(error) as refused:
            call(session)
        assert refused.value.field == field
        assert snapshot(session) == before
        # The caller's transaction goes on: the refusal never reached the database.
        enqueue(session, "test.record", {"key": "after the refusal"})
    with db.session() as session:
        assert session.execute(text("SELECT count(*) FROM jobs")).scalar() == before[0][0] + 1


@pytest.mark.parametrize("call, field", [
    (lambda: control.get_job(True), "job_id"),
    (lambda: control.get_job("1"), "job_id"),
    (lambda: control.get_job(2**63), "job_id"),
    (lambda: control.retry_job(0), "job_id"),
    (lambda: control.cancel_job(1.0), "job_id"),
    (lambda: control.cancel_job(1, reason=None), "reason"),
    (lambda: control.job_logs(1, limit=True), "limit"),
    (lambda: control.pause_queue("bulk\x00"), "queue"),
    (lambda: control.set_queue_limits("bulk", concurrency=2**31), "concurrency"),
    (lambda: control.set_queue_limits("bulk", rate=(5, NAN)), "rate"),
    (lambda: control.set_queue_limits("bulk", rate=(5, 0)), "rate"),
    (lambda: control.set_queue_limits("bulk", rate=5), "rate"),
    (lambda: control.set_queue_limits("bulk", window=0.5), "window"),
    (lambda: api.get_schedule("a\x00"), "name"),
    (lambda: api.delete_schedule(["x"]), "name"),
    (lambda: api.cron_lateness(since="yesterday"), "since"),
    (lambda: api.add_schedule("s", "test.record", "* * * * *", timezone="America", payload={"key": "k"}), "timezone"),
    (lambda: api.add_schedule("s", "test.record", "* * * * *", timezone="a" * 300, payload={"key": "k"}), "timezone"),
    (lambda: api.add_schedule("s", "test.record", None, payload={"key": "k"}), "cron"),
    (lambda: api.add_schedule("s", "test.record", "* * * * *", payload={"key": "\x00"}), "payload"),
    (lambda: api.add_schedule("s\n", "test.record", "* * * * *", payload={"key": "k"}), "name"),
    (lambda: api.add_schedule("s", "test.record", "* * * * *", payload={"key": "k"}, misfire=["skip"]), "misfire"),
    (lambda: api.add_schedule("s", "test.record", "* * * * *", payload={"key": "k"}, enabled="no"), "enabled"),
])
def test_control_and_schedule_refusals_name_the_field(db, call, field):
    with db.session() as session:
        before = snapshot(session)
    with pytest.raises(ValidationError) as refused:
        call()
    assert refused.value.field == field, refused.value
    with db.session() as session:
        assert snapshot(session) == before


def test_a_cancel_reason_is_cleaned_and_bounded(db):
    job = enqueue_now("test.record", {"key": "to cancel"})
    assert control.cancel_job(job.id, "bad\x00 \ud800 " + "r" * 2000) == "cancelled"
    reason = control.get_job(job.id).job["cancel_reason"]
    assert reason.startswith("bad \ufffd rrr") and len(reason) == 1000 and reason.endswith("\u2026")
