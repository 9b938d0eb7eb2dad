"""The gate's checks, without a database (tests/integration/test_input_gate.py runs them
against PostgreSQL)."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from shared import inputs
from shared.errors import ConfigurationError, InputInvalid, PayloadInvalid, PayloadTooLarge, UnknownJobType, UnknownQueue
from shared.jobtypes.registry import Payload, Registry, JobType
from shared.settings import load_settings

ROOT = Path(__file__).resolve().parents[2]
UTC = timezone.utc


class Free(Payload):
    data: Any = None
    number: float = 0.0


FREE = JobType("unit.free", Free)


@pytest.mark.parametrize("value", [True, False, "1", 1.0, None, 0, -1, 2**63, [1]])
def test_job_ids_are_ints_in_range(value):
    with pytest.raises(InputInvalid) as refused:
        inputs.job_id(value)
    assert refused.value.field == "job_id"


def test_job_ids_keep_their_value():
    assert inputs.job_id(1) == 1 and inputs.job_id(2**63 - 1) == 2**63 - 1
    assert inputs.job_ids((3, 1, 3)) == [1, 3]


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -1, 1e12, "5", True, None, 10**400, timedelta(days=-1)])
def test_seconds_are_finite_numbers_in_range(value):
    with pytest.raises(InputInvalid, match="delay"):
        inputs.seconds(value, "delay", 0, inputs.DELAY_MAX_SECONDS)


def test_seconds_take_numbers_and_timedeltas():
    assert inputs.seconds(5, "t", 1, 10) == 5.0
    assert inputs.seconds(timedelta(minutes=1), "t", 1, 100) == 60.0


@pytest.mark.parametrize("value", ["2026-01-01", datetime(2026, 1, 1), datetime(1999, 12, 31, tzinfo=UTC),
                                   datetime.max.replace(tzinfo=UTC), datetime(9999, 12, 31, 23, tzinfo=timezone(timedelta(hours=-5)))])
def test_moments_are_aware_datetimes_of_years_2000_to_9999(value):
    with pytest.raises(InputInvalid, match="run_at"):
        inputs.moment(value, "run_at")


def test_moments_come_back_in_utc():
    berlin = datetime(2026, 7, 1, 12, tzinfo=timezone(timedelta(hours=2)))
    assert inputs.moment(berlin, "run_at") == berlin and inputs.moment(berlin, "run_at").tzinfo is UTC


@pytest.mark.parametrize("value, words", [
    ("a\x00", "NUL"), ("\ud800", "surrogate"), ("", "1 to 5"), ("toolong", "1 to 5"), (5, "string"),
])
def test_text_refuses_what_postgres_cannot_store(value, words):
    with pytest.raises(InputInvalid, match=words):
        inputs.text(value, "name", 5)


def test_a_reason_is_cleaned_not_refused():
    assert inputs.reason("a\x00b\ud800c😀") == "ab\ufffdc😀"
    assert len(inputs.reason("r" * 5000)) == inputs.REASON_MAX_CHARS
    with pytest.raises(InputInvalid):
        inputs.reason(None)


@pytest.mark.parametrize("value", ["default\n", "Default", "", "a" * 64, 5, None, "x'; --"])
def test_queue_names_follow_the_table_pattern(value):
    with pytest.raises(UnknownQueue):
        inputs.queue_name(value)


def test_job_types_by_name_or_declaration():
    registry = Registry()
    registry.declare(FREE)
    assert inputs.job_type("unit.free", registry) is FREE and inputs.job_type(FREE, registry) is FREE
    for bad in (42, None, "x" * 300, "unit.free\x00"):
        with pytest.raises(UnknownJobType):
            inputs.job_type(bad, registry)


@pytest.mark.parametrize("value, words", [
    ({"a": float("nan")}, "NaN"), ({"a": [float("-inf")]}, "NaN"), ({"a\x00": 1}, "NUL"), ({"a": "\udc00"}, "surrogate"),
    ({1: "a"}, "keys must be strings"), ({"a": {1, 2}}, "set"), ({"a": object()}, "not a JSON value"),
    ({"a": 2**64}, "64-bit"), ({"a": "x" * 20_000}, "bytes"), ("[]", "JSON object"), ([], "JSON object"),
])
def test_metadata_is_a_storable_json_object(value, words):
    with pytest.raises(InputInvalid, match=words) as refused:
        inputs.json_object(value, "metadata")
    assert refused.value.field == "metadata"


def test_metadata_encodes_compactly():
    assert inputs.json_object(None, "metadata") == "{}"
    assert inputs.json_object({"a": (1, "é")}, "metadata") == '{"a":[1,"é"]}'


def deep(levels: int) -> Any:
    value: Any = 0
    for _ in range(levels):
        value = [value]
    return value


@pytest.mark.parametrize("value, error, words", [
    ({"number": float("nan")}, PayloadInvalid, "payload.number"),
    ({"number": "Infinity"}, PayloadInvalid, "payload.number"),
    ({"data": {"k": [float("nan")]}}, PayloadInvalid, "payload.data.k[0]"),
    ({"data": "\x00"}, PayloadInvalid, "NUL"),
    ({"data": deep(inputs.JSON_MAX_DEPTH + 1)}, PayloadInvalid, "nested deeper"),
    ({"data": deep(200_000)}, PayloadInvalid, "nested deeper"),
    ({"data": b"\xff"}, PayloadInvalid, "UTF-8"),
    ({"data": "x" * 1000}, PayloadTooLarge, "limit is 500"),
    ("{}", PayloadInvalid, "JSON object"),
    (None, PayloadInvalid, "JSON object"),
])
def test_payloads_refuse_what_json_would_change_or_postgres_refuse(value, error, words):
    with pytest.raises(error, match=re.escape(words)) as refused:
        inputs.payload(FREE, value, 500)
    assert refused.value.field == "payload"


def test_payload_size_counts_numbers_as_the_database_writes_them():
    # 1e300 is 5 bytes of JSON and 301 bytes of jsonb text: the database's ceiling sees 301.
    with pytest.raises(PayloadTooLarge, match="as the database stores it"):
        inputs.payload(FREE, {"data": [1e300] * 4000}, 1_000_000)


def test_stored_size_matches_jsonb_text_rules():
    # {"a": [1, 2.5, 0.0000001, "x\"\n"], "c": null, "d": true, "bb": {}}
    value = {"a": [1, 2.5, 1e-7, 'x"\n'], "bb": {}, "c": None, "d": True}
    assert inputs.stored_size(value) == len('{"a": [1, 2.5, 0.0000001, "x\\"\\n"], "c": null, "d": true, "bb": {}}')
    assert inputs.stored_size({"z": -0.0}) == len('{"z": 0.0}')


def test_settings_refuse_nan_infinity_and_a_payload_limit_above_the_database_ceiling():
    for key, value in [("JOBS_MAX_PAYLOAD_BYTES", "2000000"), ("JOBS_HEARTBEAT_SECONDS", "nan"),
                       ("JOBS_DISPATCH_POLL_SECONDS", "inf"), ("JOBS_BACKOFF_MAX_SECONDS", "1e300"),
                       ("JOBS_DEFAULT_TIMEOUT_SECONDS", "0.5")]:
        with pytest.raises(ConfigurationError, match=key):
            load_settings({key: value})
    assert load_settings({"JOBS_MAX_PAYLOAD_BYTES": "1048576"}).max_payload_bytes == 1_048_576


def test_the_docs_code_runs_as_written():
    doc = (ROOT / "docs/inputs.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", doc, re.S)
    assert blocks
    for block in blocks:
        exec(compile(block, "docs/inputs.md", "exec"), {})
