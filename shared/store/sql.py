"""Loads the named statements of the store's `.sql` files once, as reusable (so
compile-cached) clauses. One file per concern: `queries.sql` (jobs and queues),
`schedules.sql` (cron), `maintenance.sql` (pruning, metrics roll-up)."""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path

from sqlalchemy import TextClause, text

_DIR = Path(__file__).parent
_HEADER = re.compile(r"^-- name: (\w+)\n((?:--.*\n)+)", re.MULTILINE)


@cache
def _load() -> dict[str, TextClause]:
    statements: dict[str, TextClause] = {}
    for path in sorted(_DIR.glob("*.sql")):
        source = path.read_text()
        headers = list(_HEADER.finditer(source))
        for index, match in enumerate(headers):
            name = match.group(1)
            end = headers[index + 1].start() if index + 1 < len(headers) else len(source)
            body = source[match.end():end].strip().rstrip(";")
            if not body:
                raise RuntimeError(f"query {name} in {path.name} has no statement")
            if name in statements:
                raise RuntimeError(f"query {name} is defined twice ({path.name})")
            statements[name] = text(body)
    return statements


def query(name: str) -> TextClause:
    """The named statement from queries.sql."""
    return _load()[name]


def names() -> list[str]:
    return sorted(_load())
