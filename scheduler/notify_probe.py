"""Whether NOTIFY reaches the dispatcher's listener, judged from tokens it sends itself.

A LISTEN through PgBouncer in transaction mode is accepted and then hears nothing (the server
connection that ran it goes back to the pool), so a misrouted listener fails silently: jobs
still move, by polling, only later. The dispatcher sends a token on its own channel through the
normal database path every `every` seconds; a token heard within `timeout` says notifications
arrive, one unheard past it says they do not. Pure state and monotonic times: no I/O here.
"""

from __future__ import annotations

import uuid

PROBE_PREFIX = "probe:"


class NotifyProbe:
    def __init__(self, every: float, timeout: float) -> None:
        self.every = every
        self.timeout = timeout
        self.ok: bool | None = None  # None: no probe judged yet
        self.sent_total = 0
        self.heard_total = 0
        self.last_delay: float | None = None  # seconds from sending a token to hearing it
        self._token: str | None = None
        self._sent_at: float | None = None
        self._last_start = float("-inf")

    def due(self, now: float) -> bool:
        """A new token is due: none is out, and the last was sent `every` seconds ago."""
        return self._token is None and now - self._last_start >= self.every

    def start(self, now: float) -> str:
        self._token = f"{PROBE_PREFIX}{uuid.uuid4().hex}"
        self._sent_at = self._last_start = now
        self.sent_total += 1
        return self._token

    def cancel(self) -> None:
        """The token could not be sent: nothing to judge."""
        self._token = self._sent_at = None

    def heard(self, payload: str, now: float) -> None:
        if payload != self._token or self._sent_at is None:
            return  # another replica's token, or one already judged late
        self.heard_total += 1
        self.last_delay = now - self._sent_at
        self.ok = True
        self._token = self._sent_at = None

    def judge(self, now: float) -> None:
        """A token out for longer than `timeout`: notifications are not arriving."""
        if self._sent_at is not None and now - self._sent_at > self.timeout:
            self.ok = False
            self._token = self._sent_at = None

    def report(self) -> dict[str, object]:
        return {
            "notifications": {None: "unknown", True: "arriving", False: "not arriving"}[self.ok],
            "probes_sent": self.sent_total,
            "probes_heard": self.heard_total,
            "last_probe_delay_seconds": None if self.last_delay is None else round(self.last_delay, 3),
        }
