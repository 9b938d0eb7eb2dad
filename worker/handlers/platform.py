"""Handlers of the platform's own job types."""

from __future__ import annotations

import time

from shared.jobtypes.builtin import NOOP, SLEEP, SleepPayload
from shared.jobtypes.registry import EmptyPayload
from worker.binding import handles
from worker.context import JobContext


@handles(NOOP)
def noop(payload: EmptyPayload, ctx: JobContext) -> None:
    return None


@handles(SLEEP)
def sleep(payload: SleepPayload, ctx: JobContext) -> None:
    # Slept in slices so a soft time limit or cancellation interrupts promptly.
    deadline = time.monotonic() + payload.seconds
    while (left := deadline - time.monotonic()) > 0:
        time.sleep(min(left, 0.1))
