"""Job-type declarations: what every process (enqueuer, dispatcher, worker) must know.

A declaration names a job type with a stable string, the pydantic model its payload must
match, and its defaults. The code that runs it (the handler) lives in `worker/` and binds to
the name, so a service that only enqueues never imports handler dependencies.
"""

from __future__ import annotations

import difflib
import importlib
import re
import threading
from dataclasses import dataclass
from typing import Any, Callable, Generic, TypeVar

from pydantic import BaseModel, ConfigDict

from shared.errors import UnknownJobType, ValidationError
from shared.models.platform import PRIORITY_DEFAULT, PRIORITY_MAX, PRIORITY_MIN

P = TypeVar("P", bound=BaseModel)
_NAME = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$")


class Payload(BaseModel):
    """Base for payload models: unknown fields are refused, so a typo is an error, not data loss."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class EmptyPayload(Payload):
    """A job type that takes no arguments."""


POOLS = ("cpu", "io")
IO_LANE_PREFIX = "io."


def io_lane(queue: str) -> str:
    """The broker queue that carries an IO-bound job type's messages of `queue`."""
    return f"{IO_LANE_PREFIX}{queue}"


@dataclass(frozen=True)
class JobType(Generic[P]):
    name: str
    payload: type[P]
    queue: str = "default"
    priority: int = PRIORITY_DEFAULT
    max_attempts: int | None = None
    timeout_seconds: float | None = None
    backoff_base_seconds: float | None = None
    backoff_max_seconds: float | None = None
    # Uniqueness: while a job with the same key is active (and for `unique_for_seconds` after
    # it finished), enqueueing again returns that job instead of adding one.
    unique_by: tuple[str, ...] | None = None
    unique_for_seconds: float = 0.0
    # Limits per key: the payload fields whose values form the key, the scope the key lives in
    # (job types sharing a scope share the limits, e.g. everything sent to one chat), and the
    # limits themselves: at most `key_concurrency` in flight, `key_rate` = (N, per seconds).
    limit_by: tuple[str, ...] | None = None
    limit_scope: str | None = None
    key_concurrency: int | None = None
    key_rate: tuple[int, float] | None = None
    # For a sweep fired by a schedule: asked before each fire, in the cron round's transaction
    # (given its session); False skips the fire, so an idle sweep leaves no job row behind.
    has_work: Callable[[Any], bool] | None = None
    description: str = ""
    # Which worker class runs it: "cpu" (prefork processes) or "io" (the IO worker's threads,
    # for job types that mostly wait on the network). Its queue stays its queue in PostgreSQL
    # (order, pause, limits); only the broker lane differs (`broker_queue`).
    pool: str = "cpu"

    def __post_init__(self) -> None:
        if not _NAME.match(self.name):
            raise ValidationError(
                f"job type name {self.name!r} must be dotted lowercase words like 'proxies.check'", field="name"
            )
        if not PRIORITY_MIN <= self.priority <= PRIORITY_MAX:
            raise ValidationError(f"priority must be between {PRIORITY_MIN} and {PRIORITY_MAX}", field="priority")
        if (self.key_concurrency is not None or self.key_rate is not None) and not self.limit_by:
            raise ValidationError(f"{self.name}: key limits need limit_by (the fields that form the key)", field="limit_by")
        if self.key_concurrency is not None and self.key_concurrency < 1:
            raise ValidationError(f"{self.name}: key_concurrency must be at least 1", field="key_concurrency")
        if self.key_rate is not None and (self.key_rate[0] < 1 or self.key_rate[1] <= 0):
            raise ValidationError(f"{self.name}: key_rate is (starts >= 1, per seconds > 0)", field="key_rate")
        if self.pool not in POOLS:
            raise ValidationError(f"{self.name}: pool must be one of {', '.join(POOLS)}, not {self.pool!r}", field="pool")
        if self.unique_for_seconds < 0:
            raise ValidationError(f"{self.name}: unique_for_seconds must not be negative", field="unique_for_seconds")
        for group in (self.unique_by or ()), (self.limit_by or ()):
            unknown = [f for f in group if f not in self.payload.model_fields]
            if unknown:
                raise ValidationError(f"{self.name}: {unknown} are not fields of {self.payload.__name__}", field="unique_by")


@dataclass(frozen=True)
class KeyLimit:
    concurrency: int | None
    rate: tuple[int, float] | None


class Registry:
    """The declared job types of this process. `autoload`, when given, is called once, at the
    first look-up of a name not declared yet: the process-wide registry loads the platform's
    and the configured declarations then, so a service never has to remember to."""

    def __init__(self, autoload: Callable[[], object] | None = None) -> None:
        self._types: dict[str, JobType[BaseModel]] = {}
        self._lock = threading.Lock()
        self._autoload = autoload

    def declare(self, job_type: JobType[P]) -> JobType[P]:
        with self._lock:
            existing = self._types.get(job_type.name)
            if existing is not None and existing != job_type:
                raise ValidationError(f"job type {job_type.name!r} is declared twice, differently", field="name")
            self._types[job_type.name] = job_type  # type: ignore[assignment]
        return job_type

    def get(self, name: str) -> JobType[BaseModel]:
        if name not in self._types and self._autoload is not None:
            load, self._autoload = self._autoload, None
            load()
        try:
            return self._types[name]
        except KeyError:
            hint = difflib.get_close_matches(name, list(self._types), n=1)
            suffix = f"; did you mean {hint[0]!r}?" if hint else ""
            raise UnknownJobType(f"unknown job type {name!r}{suffix}", field="type", job_type=name) from None

    def __contains__(self, name: object) -> bool:
        return name in self._types

    def names(self) -> list[str]:
        return sorted(self._types)

    def all(self) -> list[JobType[BaseModel]]:
        return [self._types[n] for n in self.names()]

    def key_limits(self) -> dict[str, KeyLimit]:
        """Limit scope -> its limits. Types sharing a scope must agree on them."""
        limits: dict[str, KeyLimit] = {}
        for job_type in self._types.values():
            if job_type.limit_by and (job_type.key_concurrency or job_type.key_rate):
                scope = job_type.limit_scope or job_type.name
                limit = KeyLimit(job_type.key_concurrency, job_type.key_rate)
                if limits.setdefault(scope, limit) != limit:
                    raise ValidationError(f"job types in limit scope {scope!r} declare different limits", field="limit_scope")
        return limits


def _load_configured() -> None:
    from shared.settings import get_settings  # at first use, never at import

    load_declarations(get_settings().imports)


registry = Registry(autoload=_load_configured)


def declare(
    name: str,
    payload: type[P] = EmptyPayload,  # type: ignore[assignment]
    **defaults: object,
) -> JobType[P]:
    """Declare a job type in the process-wide registry."""
    return registry.declare(JobType(name=name, payload=payload, **defaults))  # type: ignore[arg-type]


def broker_queue(type_name: str, queue: str) -> str:
    """Where a job's message goes: its queue, or that queue's IO lane (`io.<queue>`, consumed by
    the IO worker class) when its type is declared `pool="io"`. An undeclared type (a plain-SQL
    insert of a type this process does not know) goes to its queue."""
    try:
        job_type = registry.get(type_name)
    except UnknownJobType:
        return queue
    return io_lane(queue) if job_type.pool == "io" else queue


def load_declarations(modules: tuple[str, ...] = ()) -> Registry:
    """Import the built-in declarations and the configured extra modules (`JOBS_IMPORTS`)."""
    for builtin in ("builtin", "proxies", "posts", "messages"):  # the platform's own and the three workloads
        importlib.import_module(f"shared.jobtypes.{builtin}")
    for module in modules:
        importlib.import_module(module)
    return registry
