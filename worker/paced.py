"""The send-time limits' wait, the same for every workload that reserves a send
(shared/workloads/pacing.py): a short wait is slept here, a long one becomes a snooze."""

from __future__ import annotations

import time
from typing import Callable, TypeVar

from sqlalchemy.orm import Session

from shared.outcomes import Snooze
from shared.workloads import pacing
from worker.context import JobContext

T = TypeVar("T")


def begin_paced(ctx: JobContext, begin: Callable[[Session], T | pacing.Wait]) -> T | Snooze:
    """Run `begin` (which reserves the send, or says how long to wait) in a transaction of its
    own until it does not say wait. A wait longer than JOBS_SEND_WAIT_INLINE_SECONDS, or one
    of a cancelled attempt, snoozes the job instead (a snooze spends no attempt)."""
    while True:
        with ctx.database.session() as session:
            step = begin(session)
        if not isinstance(step, pacing.Wait):
            return step
        if step.seconds > ctx.settings.send_wait_inline_seconds or ctx.cancelled:
            return Snooze(step.seconds)
        time.sleep(step.seconds)
