"""Binds handlers (the code that runs) to declared job-type names."""

from __future__ import annotations

from typing import Any, Callable, TypeVar

from shared.errors import ValidationError
from shared.jobtypes.registry import JobType

Handler = Callable[[Any, Any], Any]
H = TypeVar("H", bound=Handler)

_handlers: dict[str, Handler] = {}


def handles(job_type: JobType[Any]) -> Callable[[H], H]:
    """Decorator: `@handles(PROXY_CHECK) def check(payload, ctx): ...`."""

    def bind(function: H) -> H:
        existing = _handlers.get(job_type.name)
        if existing is not None and existing is not function:
            raise ValidationError(f"job type {job_type.name!r} already has a handler", field="name")
        _handlers[job_type.name] = function
        return function

    return bind


def handler_for(name: str) -> Handler | None:
    return _handlers.get(name)


def bound_names() -> list[str]:
    return sorted(_handlers)
