"""Loads the named statements of `queries.sql` once, as reusable (so compile-cached) clauses."""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path

from sqlalchemy import TextClause, text

_QUERIES = Path(__file__).with_name("queries.sql")
_HEADER = re.compile(r"^-- name: (\w+)\n((?:--.*\n)+)", re.MULTILINE)


@cache
def _load() -> dict[str, TextClause]:
    source = _QUERIES.read_text()
    statements: dict[str, TextClause] = {}
    headers = list(_HEADER.finditer(source))
    for index, match in enumerate(headers):
        end = headers[index + 1].start() if index + 1 < len(headers) else len(source)
        body = source[match.end():end].strip().rstrip(";")
        if not body:
            raise RuntimeError(f"query {match.group(1)} in {_QUERIES.name} has no statement")
        statements[match.group(1)] = text(body)
    return statements


def query(name: str) -> TextClause:
    """The named statement from queries.sql."""
    return _load()[name]


def names() -> list[str]:
    return sorted(_load())
