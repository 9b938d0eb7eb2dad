"""The jobs page's filters: read from a query string or a form, written back into links."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Mapping
from urllib.parse import urlencode

from shared.errors import ValidationError
from shared.models.states import JobState
from shared.store.console import JobSearch

FIELDS = ("queue", "state", "type", "since", "until", "text", "unique_key", "worker")


def parse_search(values: Mapping[str, str]) -> JobSearch:
    """Empty fields are no filter; a bad state or time raises ValidationError naming the field."""
    get = {name: (values.get(name) or "").strip() or None for name in FIELDS}
    if get["state"] is not None and get["state"] not in set(JobState):
        raise ValidationError(f"state must be one of {', '.join(JobState)}", field="state")
    return JobSearch(
        queue=get["queue"], state=get["state"], type=get["type"], since=_time(get["since"], "since"),
        until=_time(get["until"], "until"), text=get["text"], unique_key=get["unique_key"], worker=get["worker"],
    )


def _time(value: str | None, field: str) -> datetime | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise ValidationError(f"{field} must be a date and time like 2026-12-01T10:00", field=field) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def search_fields(search: JobSearch) -> dict[str, str]:
    """The filter as form fields (what the page's inputs and hidden fields hold)."""
    fields: dict[str, str] = {}
    for name in FIELDS:
        value = getattr(search, name)
        if value is not None:
            fields[name] = value.strftime("%Y-%m-%dT%H:%M") if isinstance(value, datetime) else str(value)
    return fields


def search_query(search: JobSearch, **extra: object) -> str:
    fields: dict[str, object] = dict(search_fields(search))
    fields.update({k: v for k, v in extra.items() if v is not None})
    return urlencode(fields)
