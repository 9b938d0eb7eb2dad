"""Recurring schedules declared next to their job types, kept as declared.

A declaration module must not read the settings when it is imported, nor pull in the database:
`recurring()` only records what was declared (the cron, or a function of the settings giving
it, and a condition on the settings). `shared.schedules.declared_schedules(settings)` resolves
and validates these with the process's settings, when the scheduler starts; a module that
wants its schedule checked at import uses `shared.schedules.schedule()` instead.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

from shared.errors import ScheduleInvalid
from shared.jobtypes.registry import JobType

if TYPE_CHECKING:
    from shared.settings import Settings


@dataclass(frozen=True)
class Recurring:
    job_type: str
    cron: str | Callable[["Settings"], str]
    # The other options of `shared.schedules.define` (name, timezone, payload, misfire, ...).
    options: tuple[tuple[str, Any], ...] = ()
    # Declared only in a process whose settings satisfy this (None: always).
    when: Callable[["Settings"], bool] | None = None

    @property
    def name(self) -> str:
        return str(dict(self.options).get("name") or self.job_type)


_recurring: dict[str, Recurring] = {}
_lock = threading.Lock()


def recurring(
    job_type: str | JobType[Any], *, cron: str | Callable[["Settings"], str],
    when: Callable[["Settings"], bool] | None = None, **options: Any,
) -> Recurring:
    """Declare a schedule whose cron (or presence) follows the settings, e.g.
    `recurring(CHECK_ALL, cron=lambda s: s.proxy_check_cron, when=lambda s: s.workload_schedules)`."""
    name = job_type.name if isinstance(job_type, JobType) else job_type
    declared = Recurring(name, cron, tuple(sorted(options.items())), when)
    with _lock:
        existing = _recurring.get(declared.name)
        if existing is not None and existing != declared:
            raise ScheduleInvalid(f"schedule {declared.name!r} is declared twice, differently", field="name")
        _recurring[declared.name] = declared
    return declared


def recurring_declarations() -> list[Recurring]:
    with _lock:
        return [_recurring[name] for name in sorted(_recurring)]
