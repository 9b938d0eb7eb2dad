"""What the operator commands (`jobctl jobs | queues | stats`) share: the database they use, how
they print (aligned text, or `--json` for scripts), how they read times, and how a refusal of the
platform becomes a message and exit code 1 (click's usage errors keep exit code 2)."""

from __future__ import annotations

import functools
import json
import re
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any, Callable, Iterator, Mapping, Sequence, TypeVar

import click

from shared.cli.exits import as_click
from shared.db import Database, get_database
from shared.errors import PlatformError
from shared.runtime import with_runtime_urls
from shared.settings import get_settings

F = TypeVar("F", bound=Callable[..., Any])

json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON (for scripts) instead of a table.")

_AGO = re.compile(r"^(\d+(?:\.\d+)?)\s*(s|m|h|d|w)$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def database() -> Database:
    """The platform's database, also when it is the embedded one of a `jobctl up` running beside us."""
    return get_database(with_runtime_urls(get_settings()))


def refusals_as_errors(command: F) -> F:
    """Turn the platform's errors (unknown job, unknown queue, a state that forbids the action,
    an unreachable database) into a one-line message without a traceback: exit code 2 for a
    refused argument, 1 for the rest (shared/cli/exits.py)."""

    @functools.wraps(command)
    def run(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except PlatformError as exc:
            raise as_click(exc) from None

    return run  # type: ignore[return-value]


class TimeParam(click.ParamType):
    """A point in time: ISO 8601 (no offset means UTC) or an age such as 90s, 15m, 2h, 3d, 1w (that long ago)."""

    name = "time"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> datetime:
        if isinstance(value, datetime):
            return value
        text = str(value).strip()
        ago = _AGO.match(text)
        if ago:
            return datetime.now(timezone.utc) - timedelta(seconds=float(ago.group(1)) * _UNITS[ago.group(2)])
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError:
            self.fail(f"{text!r} is neither an ISO 8601 time nor an age like 15m, 2h, 3d", param, ctx)
        return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=timezone.utc)


TIME = TimeParam()


def _plain(value: Any) -> Any:
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, timedelta):
        return value.total_seconds()
    raise TypeError(f"cannot encode {type(value).__name__} as JSON")


def emit_json(data: Any) -> None:
    click.echo(json.dumps(data, default=_plain, indent=2, sort_keys=False))


def cell(value: Any, width: int | None = None) -> str:
    if value is None:
        text = "-"
    elif isinstance(value, datetime):
        text = value.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
    elif isinstance(value, float):
        # Enough digits to tell 0.07 jobs a minute from none, without noise on large figures.
        text = f"{value:.0f}" if abs(value) >= 100 else f"{value:.1f}" if abs(value) >= 1 else f"{value:.2f}"
    elif isinstance(value, bool):
        text = "yes" if value else "no"
    else:
        text = " ".join(str(value).split())  # one line, whatever the value held
    if width is not None and len(text) > width:
        text = text[: width - 1] + "…"
    return text


def table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str], widths: Mapping[str, int] | None = None) -> str:
    """Rows as aligned columns (times in UTC); long values are cut to `widths[column]`."""
    widths = widths or {}
    cells = [[cell(row.get(c), widths.get(c)) for c in columns] for row in rows]
    sizes = [max([len(c)] + [len(line[i]) for line in cells]) for i, c in enumerate(columns)]
    lines = ["  ".join(c.upper().ljust(sizes[i]) for i, c in enumerate(columns)).rstrip()]
    lines += ["  ".join(value.ljust(sizes[i]) for i, value in enumerate(line)).rstrip() for line in cells]
    return "\n".join(lines)


def pairs(items: Iterator[tuple[str, Any]] | Sequence[tuple[str, Any]]) -> str:
    """`key: value` lines, keys aligned."""
    items = list(items)
    size = max((len(k) for k, _ in items), default=0)
    return "\n".join(f"{k.ljust(size)}  {cell(v)}" for k, v in items)
