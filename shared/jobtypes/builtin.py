"""Job types the platform itself ships: diagnostics and benchmark work."""

from __future__ import annotations

from pydantic import Field

from shared.jobtypes.registry import EmptyPayload, Payload, declare


class SleepPayload(Payload):
    seconds: float = Field(ge=0, le=3600)


# Does nothing: the benchmark's unit of work, and a smoke test of a running stack.
NOOP = declare("platform.noop", EmptyPayload, description="Does nothing; for smoke tests and benchmarks.")
SLEEP = declare("platform.sleep", SleepPayload, description="Sleeps; for checking timeouts and shutdown.")
