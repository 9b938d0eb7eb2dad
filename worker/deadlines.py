"""Job deadlines where Celery's time limits do not exist (the threads pool, the solo pool).

Prefork enforces a job's timeout with Celery's soft limit (an exception in the handler) and
hard limit (the process is killed). A thread can be neither interrupted nor killed, so one
watcher thread per worker process does what can be done:

1. at the job's timeout it flags the attempt: `ctx.cancelled` turns true and `ctx.checkpoint()`
   raises `AttemptTimedOut` (a `SoftTimeLimitExceeded`, so the attempt is recorded `timed_out`
   and retried like a prefork soft limit);
2. past the hard limit (`shared.broker.hard_time_limit`: 10% more, at least 1 s) it writes the
   attempt's end itself, `timed_out`, and abandons the thread: the thread runs on until its
   handler returns (a Python thread cannot be killed), and its late end is refused by the finish
   statement, which never ends an execution twice. The job is retried or failed as after a
   prefork hard limit, while the abandoned thread keeps its pool slot until it returns.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Callable

from celery.exceptions import SoftTimeLimitExceeded

from shared.broker import hard_time_limit

log = logging.getLogger(__name__)

POLL_SECONDS = 0.1


class AttemptTimedOut(SoftTimeLimitExceeded):
    """The attempt ran past its job's timeout (raised by `ctx.checkpoint()`)."""


@dataclass
class _Watched:
    soft_at: float
    hard_at: float
    on_soft: Callable[[], None]
    on_hard: Callable[[], None]
    soft_done: bool = False


class DeadlineWatcher:
    """One thread per process; `watch` an attempt when it starts, `forget` it when it ends."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._watched: dict[object, _Watched] = {}
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    def watch(self, key: object, timeout: float, on_soft: Callable[[], None], on_hard: Callable[[], None]) -> None:
        now = time.monotonic()
        with self._lock:
            self._watched[key] = _Watched(now + timeout, now + hard_time_limit(timeout), on_soft, on_hard)
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="deadlines", daemon=True)
                self._thread.start()

    def forget(self, key: object) -> None:
        with self._lock:
            self._watched.pop(key, None)

    def _loop(self) -> None:
        while True:
            time.sleep(POLL_SECONDS)
            now = time.monotonic()
            soft: list[Callable[[], None]] = []
            hard: list[Callable[[], None]] = []
            with self._lock:
                for key, entry in list(self._watched.items()):
                    if now >= entry.hard_at:
                        del self._watched[key]
                        hard.append(entry.on_hard)
                    elif now >= entry.soft_at and not entry.soft_done:
                        entry.soft_done = True
                        soft.append(entry.on_soft)
            for call in soft:
                _guarded(call)
            for call in hard:
                # Writing an end may wait out a database outage: never hold up other deadlines.
                threading.Thread(target=_guarded, args=(call,), name="deadline-end", daemon=True).start()


def _guarded(call: Callable[[], None]) -> None:
    try:
        call()
    except Exception:  # noqa: BLE001 - the watcher must outlive any one attempt
        log.exception("deadline action failed")
