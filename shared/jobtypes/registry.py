"""Job-type declarations: what every process (enqueuer, dispatcher, worker) must know.

A declaration names a job type with a stable string, the pydantic model its payload must
match, and its defaults. The code that runs it (the handler) lives in `worker/` and binds to
the name, so a service that only enqueues never imports handler dependencies.

Declarations never read the settings when they are imported: a default that follows a setting
is given as a function of the settings (`timeout_seconds=lambda s: s.platform_timeout_seconds
+ 30`), and the registry resolves it once, when the process loads its declarations with its
settings (`load_declarations(settings)`). Readers (enqueue, the cron service, the worker) get
plain values from `registry.get`, so the enqueue path costs one dict look-up, as before.
"""

from __future__ import annotations

import difflib
import functools
import importlib
import re
import threading
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Callable, Generic, TypeVar

from pydantic import BaseModel, ConfigDict

from shared.errors import ConfigurationError, UnknownJobType, ValidationError
from shared.models.platform import PRIORITY_DEFAULT, PRIORITY_MAX, PRIORITY_MIN

if TYPE_CHECKING:
    from shared.settings import Settings

P = TypeVar("P", bound=BaseModel)
_NAME = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$")
_FUNCTION_PATH = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
# The defaults a declaration may give as a function of the settings, resolved by the registry.
FROM_SETTINGS = ("timeout_seconds", "key_concurrency")


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
class FunctionAt:
    """A function named by its path ('package.module:function'), imported at its first call.

    A sweep's work probe queries the domain tables (`shared.workloads`, which enqueue through
    the store): naming it keeps the declarations free of the database and the store, so
    importing a declaration never pulls them in. Equal paths are equal declarations."""

    path: str

    def __post_init__(self) -> None:
        if not _FUNCTION_PATH.match(self.path):
            raise ValidationError(f"{self.path!r} must name a function as 'package.module:function'", field="has_work")

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return _imported(self.path)(*args, **kwargs)


@functools.lru_cache(maxsize=None)
def _imported(path: str) -> Callable[..., Any]:
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)  # type: ignore[no-any-return]


def function_at(path: str) -> FunctionAt:
    """`has_work=function_at("shared.workloads.proxies:any_checkable_proxies")`."""
    return FunctionAt(path)


@dataclass(frozen=True)
class JobType(Generic[P]):
    name: str
    payload: type[P]
    queue: str = "default"
    priority: int = PRIORITY_DEFAULT
    max_attempts: int | None = None
    # A number, or a function of the settings (resolved by the registry: `FROM_SETTINGS`).
    timeout_seconds: float | Callable[["Settings"], float] | None = None
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
    key_concurrency: int | Callable[["Settings"], int] | None = None
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
        if isinstance(self.key_concurrency, int) and self.key_concurrency < 1:
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

    @property
    def from_settings(self) -> tuple[str, ...]:
        """The defaults this declaration takes from the settings (functions to resolve)."""
        return tuple(field for field in FROM_SETTINGS if callable(getattr(self, field)))

    def resolve(self, settings: "Settings") -> "JobType[P]":
        """This declaration with its defaults from `settings` (itself when it takes none)."""
        fields = self.from_settings
        if not fields:
            return self
        return replace(self, **{field: getattr(self, field)(settings) for field in fields})


@dataclass(frozen=True)
class KeyLimit:
    concurrency: int | None
    rate: tuple[int, float] | None


class Registry:
    """The declared job types of this process, and their defaults resolved with its settings.

    `autoload`, when given, is called once, at the first look-up of a name not resolved yet:
    the process-wide registry loads the platform's and the configured declarations with the
    process's settings then, so a service never has to remember to."""

    def __init__(self, autoload: Callable[[], object] | None = None, settings: "Settings | None" = None) -> None:
        self._declared: dict[str, JobType[BaseModel]] = {}
        self._types: dict[str, JobType[BaseModel]] = {}  # resolved: what every reader gets
        self._settings = settings
        self._lock = threading.Lock()
        self._autoload = autoload

    def declare(self, job_type: JobType[P]) -> JobType[P]:
        with self._lock:
            existing = self._declared.get(job_type.name)
            if existing is not None and existing != job_type:
                raise ValidationError(f"job type {job_type.name!r} is declared twice, differently", field="name")
            self._declared[job_type.name] = job_type  # type: ignore[assignment]
            if self._settings is not None or not job_type.from_settings:
                self._types[job_type.name] = self._resolve(job_type)  # type: ignore[assignment]
        return job_type

    def configure(self, settings: "Settings") -> "Registry":
        """Resolve every declaration (and every later one) with `settings`."""
        with self._lock:
            self._settings = settings
            self._autoload = None  # configured: there is nothing left to load
            self._types = {name: self._resolve(job_type) for name, job_type in self._declared.items()}
        return self

    def _resolve(self, job_type: JobType[P]) -> JobType[P]:
        return job_type if self._settings is None else job_type.resolve(self._settings)

    def get(self, name: str) -> JobType[BaseModel]:
        resolved = self._types.get(name)
        if resolved is not None:
            return resolved
        if self._autoload is not None:
            load, self._autoload = self._autoload, None
            load()
            resolved = self._types.get(name)
            if resolved is not None:
                return resolved
        if name in self._declared:
            fields = ", ".join(self._declared[name].from_settings)
            raise ConfigurationError(
                f"job type {name!r} takes {fields} from the settings: load the declarations with them first"
                " (load_declarations(settings))", job_type=name,
            )
        hint = difflib.get_close_matches(name, list(self._declared), n=1)
        suffix = f"; did you mean {hint[0]!r}?" if hint else ""
        raise UnknownJobType(f"unknown job type {name!r}{suffix}", field="type", job_type=name) from None

    def __contains__(self, name: object) -> bool:
        return name in self._declared

    def names(self) -> list[str]:
        return sorted(self._declared)

    def all(self) -> list[JobType[BaseModel]]:
        return [self.get(n) for n in self.names()]

    def key_limits(self) -> dict[str, KeyLimit]:
        """Limit scope -> its limits. Types sharing a scope must agree on them."""
        limits: dict[str, KeyLimit] = {}
        for job_type in self.all():
            if job_type.limit_by and (job_type.key_concurrency or job_type.key_rate):
                scope = job_type.limit_scope or job_type.name
                limit = KeyLimit(job_type.key_concurrency, job_type.key_rate)
                if limits.setdefault(scope, limit) != limit:
                    raise ValidationError(f"job types in limit scope {scope!r} declare different limits", field="limit_scope")
        return limits


def _load_configured() -> None:
    load_declarations()  # the process's settings, read at first use, never at import


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


def load_declarations(settings: "Settings | None" = None) -> Registry:
    """Import the built-in declarations and the configured extra modules (`JOBS_IMPORTS`), and
    resolve their defaults with `settings` (the process's settings when None)."""
    if settings is None:
        from shared.settings import get_settings  # at first use, never at import

        settings = get_settings()
    for builtin in ("builtin", "proxies", "posts", "messages"):  # the platform's own and the three workloads
        importlib.import_module(f"shared.jobtypes.{builtin}")
    for module in settings.imports:
        importlib.import_module(module)
    return registry.configure(settings)
