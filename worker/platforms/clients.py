"""One HTTP client per worker process, shared by its threads and jobs.

Building an `httpx.Client` loads the TLS trust store: tens of milliseconds on an idle machine,
most of a second on a loaded one, which capped Telegram sends far below 30 a second when every
send built its own. The shared client keeps no idle connections: a request on a connection the
platform closed while it sat idle fails after it may have been sent, and a send whose outcome is
unknown is never repeated (it goes to an operator), so reuse would turn an idle timeout into a
message flagged for review. New connections cost a TCP (and TLS) handshake only.
"""

from __future__ import annotations

import os
import threading

import httpx
from celery.signals import worker_process_init

_lock = threading.Lock()
_client: tuple[int, httpx.Client] | None = None


def shared_client() -> httpx.Client:
    """This process's client (made after a fork, never inherited across one)."""
    global _client
    with _lock:
        if _client is None or _client[0] != os.getpid():
            _client = (os.getpid(), httpx.Client(limits=httpx.Limits(max_connections=None, max_keepalive_connections=0)))
        return _client[1]


@worker_process_init.connect
def _warm(**_: object) -> None:
    # Made when a pool process starts, not by its first send (which it would slow by the trust
    # store's load).
    shared_client()
