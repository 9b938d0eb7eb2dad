"""The gate: every value a caller hands the platform is checked here, before any SQL.

enqueue, the control API and schedules pass their inputs through these checks, so a bad value
is refused with a `ValidationError` subclass naming the field, and never reaches PostgreSQL:
a statement the database refuses would abort the caller's whole transaction, and a value it
silently changes (NaN stored as null) would be data loss. What is refused, and why:

- wrong Python types (a str for a datetime, a bool for an id or a count);
- numbers out of the platform's ranges (the shared numbers below; the database checks the
  same ones, see docs/sql-contract.md), NaN and Infinity anywhere;
- text PostgreSQL cannot store: NUL (U+0000) and lone surrogates (U+D800..U+DFFF);
- JSON it cannot store or read back: non-finite floats, integers beyond 64 bits, nesting
  deeper than `JSON_MAX_DEPTH`, payloads whose stored form exceeds the database ceiling.

Each check returns the normalized value (a float for seconds, a datetime in UTC, the encoded
JSON), so callers use what the gate returns, never the raw input.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from enum import Enum
from typing import Any

from pydantic import BaseModel
from pydantic import ValidationError as PydanticValidationError
from pydantic_core import PydanticSerializationError

from shared.errors import InputInvalid, PayloadInvalid, PayloadTooLarge, UnknownJobType, UnknownQueue, ValidationError
from shared.jobtypes.registry import JobType, Registry
from shared.models.platform import QUEUE_NAME_PATTERN
# payload::text on INSERT (the database's ceiling); JOBS_MAX_PAYLOAD_BYTES may not exceed it.
from shared.settings import PAYLOAD_CEILING_BYTES

# The shared numbers (the database's constraints check the same ones).
JOB_ID_MAX = 2**63 - 1
MAX_ATTEMPTS_MAX = 1000
TIMEOUT_MIN_SECONDS, TIMEOUT_MAX_SECONDS = 1.0, 2_592_000.0  # 30 days
DELAY_MAX_SECONDS = 315_360_000.0  # 10 years
UNIQUE_FOR_MAX_SECONDS = 315_360_000.0
RUN_AT_MIN = datetime(2000, 1, 1, tzinfo=timezone.utc)
RUN_AT_MAX = datetime(9999, 12, 31, tzinfo=timezone.utc)
METADATA_MAX_BYTES = 16_384
JSON_MAX_DEPTH = 100
JSON_INT_MIN, JSON_INT_MAX = -(2**63), 2**64 - 1
# Unique and limit keys live in btree indexes, whose entries must stay well under a page.
KEY_MAX_BYTES = 1000
TYPE_NAME_MAX_CHARS = 200
REASON_MAX_CHARS = 1000
DEPENDS_ON_MAX = 10_000
LIMIT_MAX = 1_000_000  # queue concurrency, rate count and dispatch window
RATE_PERIOD_MAX_SECONDS = 86_400.0 * 365
LOG_LIMIT_MAX = 100_000

_QUEUE_NAME = re.compile(QUEUE_NAME_PATTERN.removeprefix("^").removesuffix("$"))
# A number written with an exponent (1e300) is stored by jsonb as all its digits.
_SURROGATE = re.compile("[\ud800-\udfff]")
_EXPONENT = re.compile(r"[0-9][eE][-+]?[0-9]")


def show(value: Any, limit: int = 60) -> str:
    """A short repr for messages: the refused value may be a megabyte long."""
    try:
        shown = repr(value)
    except Exception:  # a hostile __repr__ must not replace the refusal
        shown = f"<{type(value).__name__}>"
    return shown if len(shown) <= limit else shown[: limit - 3] + "..."


def _refuse(error: type[ValidationError], field: str, message: str) -> ValidationError:
    return error(f"{field}: {message}", field=field)


# -- scalars -------------------------------------------------------------------------------

def integer(value: Any, field: str, lo: int, hi: int, *, error: type[ValidationError] = InputInvalid) -> int:
    """An int (never a bool, which Python counts as one) from lo to hi."""
    if not isinstance(value, int) or isinstance(value, bool):
        raise _refuse(error, field, f"must be an integer from {lo} to {hi}; got {show(value)}")
    if not lo <= value <= hi:
        raise _refuse(error, field, f"must be an integer from {lo} to {hi}; got {show(value)}")
    return int(value)


def job_id(value: Any, field: str = "job_id") -> int:
    return integer(value, field, 1, JOB_ID_MAX)


def job_ids(values: Any, field: str = "depends_on") -> list[int]:
    """A list, tuple or set of job ids; returned sorted and without repeats."""
    if isinstance(values, (str, bytes, Mapping)) or not isinstance(values, Iterable):
        raise _refuse(InputInvalid, field, f"must be a list of job ids; got {show(values)}")
    ids: set[int] = set()
    for index, value in enumerate(values):
        if index >= DEPENDS_ON_MAX:
            raise _refuse(InputInvalid, field, f"names more than {DEPENDS_ON_MAX} jobs")
        ids.add(job_id(value, f"{field}[{index}]"))
    return sorted(ids)


def number(value: Any, field: str, lo: float, hi: float, *, error: type[ValidationError] = InputInvalid) -> float:
    """A finite int or float (not a bool) from lo to hi."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _refuse(error, field, f"must be a number from {lo:g} to {hi:g}; got {show(value)}")
    try:
        result = float(value)
    except OverflowError:  # an int too large for a float
        raise _refuse(error, field, f"must be a number from {lo:g} to {hi:g}; got {show(value)}") from None
    if not math.isfinite(result) or not lo <= result <= hi:
        raise _refuse(error, field, f"must be a number from {lo:g} to {hi:g}; got {show(value)}")
    return result


def seconds(value: Any, field: str, lo: float, hi: float, *, error: type[ValidationError] = InputInvalid) -> float:
    """A duration: seconds as a finite number, or a timedelta, from lo to hi seconds."""
    if isinstance(value, timedelta):
        value = value.total_seconds()
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _refuse(error, field, f"must be seconds (a number or a timedelta) from {lo:g} to {hi:g}; got {show(value)}")
    return number(value, field, lo, hi, error=error)


def moment(value: Any, field: str, *, error: type[ValidationError] = InputInvalid) -> datetime:
    """A timezone-aware datetime in the years 2000..9999 (UTC)."""
    if not isinstance(value, datetime):
        raise _refuse(error, field, f"must be a timezone-aware datetime; got {show(value)}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise _refuse(error, field, "must be timezone-aware")
    try:
        utc = value.astimezone(timezone.utc)
    except (OverflowError, ValueError):
        raise _refuse(error, field, f"must fall in the years 2000 to 9999; got {show(value)}") from None
    if not RUN_AT_MIN <= utc <= RUN_AT_MAX:
        raise _refuse(error, field, f"must fall in the years 2000 to 9999; got {show(value)}")
    # In UTC: a wall time repeated at a DST change compares unequal to every other zone's
    # instants (PEP 495), so comparisons with the clock must not see the original zone.
    return utc


def boolean(value: Any, field: str, *, error: type[ValidationError] = InputInvalid) -> bool:
    if not isinstance(value, bool):
        raise _refuse(error, field, f"must be true or false; got {show(value)}")
    return value


# -- text ----------------------------------------------------------------------------------

def text_problem(value: str) -> str | None:
    """What PostgreSQL could not store in this text, or None."""
    if "\x00" in value:
        return "contains a NUL character (U+0000), which PostgreSQL cannot store"
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:  # UTF-8 refuses nothing else
            return "contains a lone surrogate (U+D800..U+DFFF), which is not text"
    return None


def text(
    value: Any, field: str, max_chars: int, *, min_chars: int = 1, error: type[ValidationError] = InputInvalid
) -> str:
    """A str of min_chars..max_chars characters that PostgreSQL can store as it is."""
    if not isinstance(value, str):
        raise _refuse(error, field, f"must be a string; got {show(value)}")
    if not min_chars <= len(value) <= max_chars:
        raise _refuse(error, field, f"must be {min_chars} to {max_chars} characters; got {len(value)}")
    problem = text_problem(value)
    if problem:
        raise _refuse(error, field, problem)
    return str(value)


def key(value: Any, field: str, *, error: type[ValidationError] = InputInvalid) -> str:
    """A unique or limit key: stored text, at most KEY_MAX_BYTES in UTF-8 (it is indexed)."""
    checked = text(value, field, KEY_MAX_BYTES, error=error)
    size = len(checked.encode("utf-8"))
    if size > KEY_MAX_BYTES:
        raise _refuse(error, field, f"key is {size} bytes in UTF-8; at most {KEY_MAX_BYTES}")
    return checked


def reason(value: Any, field: str = "reason") -> str:
    """An operator's free text (a cancel reason): any str is taken, cleaned so it can be
    stored: NUL removed, lone surrogates replaced by U+FFFD, cut to REASON_MAX_CHARS."""
    if not isinstance(value, str):
        raise _refuse(InputInvalid, field, f"must be a string; got {show(value)}")
    cleaned = str(value).replace("\x00", "")
    if not cleaned.isascii():
        cleaned = _SURROGATE.sub("\ufffd", cleaned)
    if len(cleaned) > REASON_MAX_CHARS:
        cleaned = cleaned[: REASON_MAX_CHARS - 1] + "\u2026"
    return cleaned


def queue_name(value: Any, field: str = "queue") -> str:
    """A queue name matching the queues table's pattern; anything else cannot name a queue."""
    if not isinstance(value, str) or not _QUEUE_NAME.fullmatch(value):
        raise UnknownQueue(
            f"unknown queue {show(value)}: a queue name is 1-63 lowercase letters, digits, '_', '.' or '-'",
            field=field, queue=value if isinstance(value, str) else None,
        )
    return value


def job_type(value: Any, registry: Registry, field: str = "type") -> JobType[BaseModel]:
    """A declared job type, by name or by its declaration."""
    if isinstance(value, JobType):
        value = value.name
    if not isinstance(value, str) or not 1 <= len(value) <= TYPE_NAME_MAX_CHARS or text_problem(value):
        raise UnknownJobType(f"unknown job type {show(value)}", field=field)
    return registry.get(value)


# -- JSON ----------------------------------------------------------------------------------

def _check_json(value: Any, field: str, error: type[ValidationError], *, strict: bool) -> None:
    """Walk a JSON-ish value (iteratively: a hostile one may nest 100,000 deep).

    strict: only dict (str keys), list, tuple, str, int, float, bool and None (metadata).
    Otherwise (a payload model's dump) other types pass: the model's serializer writes them
    (datetimes, UUIDs, decimals) as strings, which are checked where they can hold text.
    """
    stack: list[tuple[str, Any, int]] = [("", value, 0)]
    while stack:
        path, item, depth = stack.pop()
        kind = type(item)
        # Fast paths for the common, clean cases (enqueue_many runs this per payload).
        if kind is str and (item.isascii() and "\x00" not in item):
            continue
        if (kind is int and JSON_INT_MIN <= item <= JSON_INT_MAX) or item is None or kind is bool:
            continue
        if kind is float and math.isfinite(item):
            continue
        where = f"{field}{path}" if len(path) <= 80 else f"{field}{path[:40]}...{path[-37:]}"
        if isinstance(item, str):
            problem = text_problem(item)
            if problem:
                raise error(f"{where}: {problem}", field=field, path=where)
        elif isinstance(item, int):
            if not JSON_INT_MIN <= item <= JSON_INT_MAX:
                raise error(f"{where}: integer out of the 64-bit range JSON readers keep exactly", field=field, path=where)
        elif isinstance(item, float):
            if not math.isfinite(item):
                raise error(f"{where}: {item!r} is not a JSON number (NaN and Infinity are refused)", field=field, path=where)
        elif isinstance(item, (Mapping, list, tuple, set, frozenset)):
            if depth >= JSON_MAX_DEPTH:
                raise error(f"{where}: nested deeper than {JSON_MAX_DEPTH} levels", field=field, path=where)
            if isinstance(item, Mapping):
                for name, child in item.items():
                    if isinstance(name, str):
                        problem = text_problem(name)
                        if problem:
                            raise error(f"{where}: a key {problem}", field=field, path=where)
                    elif strict:
                        raise error(f"{where}: keys must be strings; got {show(name)}", field=field, path=where)
                    stack.append((f"{path}.{name}" if isinstance(name, str) and len(name) < 40 else f"{path}.<key>", child, depth + 1))
            elif strict and isinstance(item, (set, frozenset)):
                raise error(f"{where}: a set is not JSON (use a list)", field=field, path=where)
            else:
                stack.extend((f"{path}[{i}]", child, depth + 1) for i, child in enumerate(item))
        elif strict:
            raise error(f"{where}: {type(item).__name__} is not a JSON value", field=field, path=where)
        elif isinstance(item, Enum):
            stack.append((path, item.value, depth))
        elif isinstance(item, (bytes, bytearray)):
            try:
                decoded = bytes(item).decode("utf-8")
            except UnicodeDecodeError:
                raise error(f"{where}: bytes that are not UTF-8 cannot be stored as JSON text", field=field, path=where) from None
            stack.append((path, decoded, depth))
        elif isinstance(item, BaseModel):  # only inside an `Any` the dump did not convert
            stack.append((path, item.model_dump(), depth))
        elif isinstance(item, Decimal):
            continue  # written as a string
        else:
            stack.append((path, str(item), depth))


def stored_size(value: Any) -> int:
    """Bytes of `value::jsonb::text` as PostgreSQL writes it: ', ' and ': ' separators, and
    numbers in plain notation (1e300 is 301 digits). What the database's ceiling measures."""
    size = 0
    stack: list[Any] = [value]
    while stack:
        item = stack.pop()
        if item is None:
            size += 4
        elif item is True:
            size += 4
        elif item is False:
            size += 5
        elif isinstance(item, str):
            size += len(json.dumps(item, ensure_ascii=False).encode("utf-8"))  # same escapes as jsonb
        elif isinstance(item, int):
            size += len(str(item))
        elif isinstance(item, float):
            size += len(format(Decimal(repr(abs(item) if item == 0 else item)), "f"))  # numeric has no -0
        elif isinstance(item, dict):
            size += 2 + max(0, 2 * (len(item) - 1)) + 2 * len(item)
            for name, child in item.items():
                stack.append(str(name))
                stack.append(child)
        else:  # a list
            size += 2 + max(0, 2 * (len(item) - 1))
            stack.extend(item)
    return size


def _stored_size_at_most(encoded: str, ceiling: int) -> int | None:
    """The stored size when it may exceed the ceiling, else None (skipped: the common case).
    Separators at most double the compact text; only exponents grow it more."""
    if 2 * len(encoded.encode("utf-8")) <= ceiling and not _EXPONENT.search(encoded):
        return None
    return stored_size(json.loads(encoded))


def json_object(value: Any, field: str, limit: int = METADATA_MAX_BYTES) -> str:
    """A JSON object of str keys and JSON values (metadata); returns its compact encoding."""
    if value is None:
        return "{}"
    if not isinstance(value, Mapping):
        raise _refuse(InputInvalid, field, f"must be a JSON object (a dict); got {show(value)}")
    _check_json(value, field, InputInvalid, strict=True)
    try:
        encoded = json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError, RecursionError) as exc:
        raise _refuse(InputInvalid, field, f"is not JSON: {exc}") from None
    size = len(encoded.encode("utf-8"))
    stored = _stored_size_at_most(encoded, limit)
    size = max(size, stored or 0)
    if size > limit:
        raise _refuse(InputInvalid, field, f"is {size} bytes; at most {limit}")
    return encoded


def payload_problems(error: PydanticValidationError) -> str:
    """Each problem with the field it is in: `width: Input should be greater than 0; ...`. The
    same words wherever a payload is refused (enqueue, schedules, the worker)."""
    return "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'payload'}: {e['msg']}" for e in error.errors())


def payload(
    declared: JobType[BaseModel], value: Any, limit: int, field: str = "payload"
) -> tuple[str, BaseModel]:
    """The type's model, then what the database can store, then the size limit. Returns the
    encoded JSON and the validated model; raises PayloadInvalid / PayloadTooLarge."""
    if isinstance(value, BaseModel) and not isinstance(value, declared.payload):
        raise PayloadInvalid(
            f"payload for {declared.name} must be {declared.payload.__name__}, not {type(value).__name__}", field=field
        )
    if type(value) is not dict and not isinstance(value, (BaseModel, Mapping)):
        raise PayloadInvalid(f"payload for {declared.name} must be a JSON object (a dict); got {show(value)}", field=field)
    try:
        model = value if isinstance(value, BaseModel) else declared.payload.model_validate(value)
    except PydanticValidationError as exc:
        raise PayloadInvalid(f"payload for {declared.name} is invalid: {payload_problems(exc)}", field=field) from None
    except (TypeError, ValueError, RecursionError) as exc:  # a hostile mapping or validator
        raise PayloadInvalid(f"payload for {declared.name} is invalid: {exc}", field=field) from None
    try:
        # NaN and Infinity survive only in the Python dump (JSON writes them as null).
        _check_json(model.model_dump(), field, PayloadInvalid, strict=False)
        encoded = model.model_dump_json()
    except ValidationError:
        raise
    except (PydanticSerializationError, TypeError, ValueError, RecursionError) as exc:
        raise PayloadInvalid(f"payload for {declared.name} cannot be written as JSON: {exc}", field=field) from None
    size = len(encoded.encode("utf-8"))
    if size > limit:
        raise PayloadTooLarge(f"payload is {size} bytes; the limit is {limit}", field=field, size=size)
    stored = _stored_size_at_most(encoded, PAYLOAD_CEILING_BYTES)
    if stored is not None and stored > PAYLOAD_CEILING_BYTES:
        raise PayloadTooLarge(
            f"payload is {stored} bytes as the database stores it (numbers in full); the ceiling is {PAYLOAD_CEILING_BYTES}",
            field=field, size=stored,
        )
    return encoded, model
