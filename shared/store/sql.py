"""Loads the named statements of the store's `.sql` files once, as reusable (so
compile-cached) clauses; a name is unique across the files. One file per concern:

- `queries.sql`: jobs (enqueue, dispatch, claim, finish, rescue, cancel), queues, worker
  heartbeats, leader leases;
- `dependencies.sql`: edges between jobs, and settling waiting jobs;
- `limits.sql`: dispatch under concurrency and rate limits;
- `schedules.sql`: recurring schedules and the jobs their fires make;
- `maintenance.sql`: pruning, the metrics roll-up;
- `operations.sql`: operators' reads (gauges, `jobctl` listings);
- `console.sql`: the operator console's reads and its audit log;
- `sends.sql`: send-time limits of the workloads (Telegram, posts)."""

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
    """The named statement, from whichever of the store's `.sql` files holds it."""
    return _load()[name]


def names() -> list[str]:
    return sorted(_load())
