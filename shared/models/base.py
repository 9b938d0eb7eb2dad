"""Declarative base with a naming convention, so constraint names are stable across
migrations and errors name the rule that was broken (`ck_jobs_priority_range`)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Iterable

from sqlalchemy import CheckConstraint, DateTime, MetaData, func, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, mapped_column

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {datetime: DateTime(timezone=True), dict[str, Any]: JSONB}


def created_at_column() -> Any:
    return mapped_column(DateTime(timezone=True), nullable=False, server_default=func.now())


def one_of(column: str, values: Iterable[str], name: str | None = None) -> CheckConstraint:
    """A check constraint restricting a text column to a closed set of states."""
    allowed = ", ".join(f"'{v}'" for v in values)
    return CheckConstraint(f"{column} IN ({allowed})", name=name or f"{column}_valid")


EMPTY_OBJECT = text("'{}'::jsonb")
