"""The worker's Redis transport: kombu's, except that one unreadable item in a queue's list is
logged, counted and dropped instead of ending the worker.

On Redis a message is a JSON envelope (body, headers, properties) in a list that any client of
that Redis can push to. kombu pops the item, then parses the envelope in the worker's event loop,
where a parse error ends the worker ("Unrecoverable error"); `jobctl up` then stops as a whole.
The item is already gone from the list when parsing fails, so dropping it loses nothing a
reader could use. Errors of a readable message are handled later, by the consumer
(worker/consumer.py); connection errors and kombu's `Empty` pass through unchanged.

Installed by worker/app.py through Celery's `broker_transport` setting for `redis://` URLs.
"""

from __future__ import annotations

import logging
from typing import Any

from kombu.transport import redis as kombu_redis

from worker.metrics import MESSAGES_REJECTED

log = logging.getLogger(__name__)

# What parsing a bad envelope raises: JSON and text decoding (ValueError), and kombu reading
# `properties`/`delivery_info` from a document of another shape.
ENVELOPE_ERRORS = (ValueError, KeyError, TypeError, AttributeError)


class GuardedChannel(kombu_redis.Channel):  # type: ignore[misc]
    def _brpop_read(self, **options: Any) -> bool:
        try:
            return bool(super()._brpop_read(**options))
        except ENVELOPE_ERRORS as exc:
            log.warning("dropped a broker message: an item of a Redis queue list is not a kombu message (%s: %s)",
                        type(exc).__name__, " ".join(str(exc).split())[:200])
            MESSAGES_REJECTED.labels("undecodable").inc()
            return True


class GuardedTransport(kombu_redis.Transport):  # type: ignore[misc]
    Channel = GuardedChannel
