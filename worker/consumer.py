"""The worker's broker consumer: a message the worker cannot parse or accept is logged, counted
and dropped, alone, and the worker goes on consuming.

Celery turns each message into a request in the worker's main process. A value there that
Celery does not expect ends the worker with "Unrecoverable error": an unhashable id or task name
fails a dict lookup, a body that is not `[args, kwargs, embed]` fails unpacking, and a
`timelimit` of strings fails only later, in the pool's callback when a pool process takes the
task. The message is still in the broker, so every restart dies on it again; any producer on the
broker can do this.

`GuardedConsumer` is Celery's own consumer (installed with the documented `worker_consumer`
setting) with two additions around its message handler:
- a check of every field Celery and the platform read (header types, body shape, the
  dispatcher's `job_id`) before Celery accepts the message: a few type checks on data Celery
  decodes anyway, so the dispatcher's messages cost a few microseconds more, nothing else;
- a last-resort catch of anything else raised while one message is accepted.
Either way the message is rejected without requeue (on RabbitMQ it goes to the queue's
dead-letter exchange when one is set), one log line names the task, id, queue, origin and
reason (never the body: it may hold personal data), `jobs_messages_rejected_total` counts it,
and Flower gets a `task-rejected` event. Broker connection errors still propagate, so Celery
reconnects as before. Celery's own refusals (unknown task, undecodable or disallowed content)
take the same path instead of logging the body.

Dropping is safe for the dispatcher's messages: the job's row stays `dispatched` and is
published again after the redispatch timeout.
"""

from __future__ import annotations

import logging
import math
from typing import Any, Callable

from celery.utils.time import maybe_iso8601
from celery.worker import state as worker_state
from celery.worker.consumer import Consumer
from kombu.exceptions import ContentDisallowed, DecodeError
from kombu.message import Message

from worker.metrics import MESSAGES_REJECTED

log = logging.getLogger(__name__)

ID_MAX_CHARS = 255  # Celery's ids are 36; an adopted call's id becomes an indexed unique key
JOB_ID_MAX = 2**63 - 1  # a bigint
SHOWN_CHARS = 80  # of a header value quoted in a log line
REASON_CHARS = 200
# Headers that Celery reads as ids or names: None or a string.
OPTIONAL_TEXT_HEADERS = ("shadow", "root_id", "parent_id", "group")
CANVAS_KEYS = ("callbacks", "errbacks", "chain", "chord")
TIME_YEARS = (1970, 9998)  # eta and expires: a timestamp on every platform, whatever the time zone


class GuardedConsumer(Consumer):  # type: ignore[misc]
    """Celery's consumer that drops, alone, any message it cannot accept (see the module)."""

    def create_task_handler(self, *args: Any, **kwargs: Any) -> Callable[[Message], None]:
        receive = super().create_task_handler(*args, **kwargs)
        passthrough = tuple(self.connection_errors) + tuple(self.channel_errors)

        def on_task_received(message: Message) -> None:
            try:
                problem = message_problem(message)
            except ContentDisallowed as exc:
                return self._drop(message, f"content type not accepted: {exc}", "undecodable")
            except DecodeError as exc:
                return self._drop(message, f"body cannot be decoded: {exc}", "undecodable")
            if problem is not None:
                return self._drop(message, problem, "malformed")
            try:
                receive(message)
            except passthrough:
                raise  # the connection is gone: Celery reconnects, the broker redelivers
            except Exception as exc:  # noqa: BLE001 - one message must never end the worker
                self._forget(message)
                self._drop(message, f"{type(exc).__name__}: {exc}", "malformed")

        return on_task_received

    # Celery's own refusals, logged as one line without the body.

    def on_unknown_task(self, body: Any, message: Message, exc: BaseException) -> None:
        self._drop(message, "no task of this name is registered in this worker", "unknown_task", logging.ERROR)

    def on_invalid_task(self, body: Any, message: Message, exc: BaseException) -> None:
        self._drop(message, str(exc), "malformed")

    def on_unknown_message(self, body: Any, message: Message) -> None:
        self._drop(message, "not a Celery task message (no task name)", "malformed")

    def on_decode_error(self, message: Message, exc: BaseException) -> None:
        self._drop(message, f"body cannot be decoded: {exc}", "undecodable")

    def _drop(self, message: Message, reason: str, kind: str, level: int = logging.WARNING) -> None:
        fields = _named_fields(message)
        task_id = fields.get("id")
        log.log(
            level, "dropped a broker message: task %s, id %s, queue %s, from %s: %s",
            _shown(fields.get("task")), _shown(task_id), _shown((message.delivery_info or {}).get("routing_key")),
            _shown(fields.get("origin")), _one_line(reason),
        )
        MESSAGES_REJECTED.labels(kind).inc()
        if not message.acknowledged:
            message.reject_log_error(log, self.connection_errors)
        if self.event_dispatcher is not None and isinstance(task_id, str):
            try:
                self.event_dispatcher.send("task-rejected", uuid=task_id, requeue=False)
            except Exception as exc:  # noqa: BLE001 - the event is for Flower only
                log.debug("task-rejected event not sent: %s", exc)

    def _forget(self, message: Message) -> None:
        """After a failure past the strategy's bookkeeping, drop the request Celery registered
        for this message, and give back the pool slot it may have taken."""
        task_id = message.headers.get("id") if isinstance(message.headers, dict) else None
        request = worker_state.requests.get(task_id) if isinstance(task_id, str) else None
        if request is None or getattr(request, "_message", None) is not message:
            return
        was_reserved = request in worker_state.reserved_requests and request not in worker_state.active_requests
        worker_state.task_ready(request)
        semaphore = getattr(self.controller, "semaphore", None)
        if was_reserved and semaphore is not None:
            semaphore.release()  # lax: never above the pool size, so a spare release is harmless


def message_problem(message: Message) -> str | None:
    """Why this message cannot be accepted, or None. Decoding errors of the body propagate.

    Checked as Celery reads the message: protocol 2 takes its fields from the headers and the
    body is `[args, kwargs, embed]`; protocol 1 (and the hybrid of both) takes them from a body
    mapping, overridden by the headers. Some fields (the time limits) are only read after the
    task went to the pool, where a bad value ends the worker: every field Celery reads is
    checked here, before it is accepted."""
    headers = message.headers
    if type(headers) is not dict:
        return "the headers are not a mapping"
    payload = message.payload  # decoded once: Celery reuses the cached value
    if type(payload) is dict and "args" in payload:  # protocol 1 or hybrid
        fields = {**payload, **headers}
        args, kwargs, embed = payload.get("args", ()), payload.get("kwargs", {}), payload
    elif "task" in headers:  # protocol 2
        if type(payload) not in (list, tuple) or len(payload) != 3:
            return f"the body is not [args, kwargs, embed] (a {type(payload).__name__} of JSON)"
        fields = headers
        args, kwargs, embed = payload
    elif type(payload) is dict and "task" in payload:  # protocol 1 without args
        fields, args, kwargs, embed = payload, (), payload.get("kwargs", {}), payload
    else:
        return "not a Celery task message (no task name)"
    return _fields_problem(fields) or _arguments_problem(args, kwargs, embed)


def _fields_problem(fields: dict[str, Any]) -> str | None:
    if type(fields.get("task")) is not str:
        return "the task name is not a string"
    task_id = fields.get("id")
    if type(task_id) is not str or not 0 < len(task_id) <= ID_MAX_CHARS or "\x00" in task_id:
        return f"the id is not a string of 1 to {ID_MAX_CHARS} characters"
    timelimit = fields.get("timelimit")
    if timelimit is not None and not _valid_time_limits(timelimit):
        return f"timelimit {_shown(timelimit)} is not [hard, soft] seconds (numbers >= 0 or null)"
    retries = fields.get("retries")
    if retries is not None and (type(retries) is not int or retries < 0):
        return f"retries {_shown(retries)} is not a count"
    for name in OPTIONAL_TEXT_HEADERS:
        value = fields.get(name)
        if value is not None and type(value) is not str:
            return f"{name} {_shown(value)} is not a string"
    stamped = fields.get("stamped_headers")
    if stamped is not None and not (type(stamped) is list and all(type(s) is str for s in stamped)):
        return "stamped_headers is not a list of names"
    stamps = fields.get("stamps")
    if stamps is not None and type(stamps) is not dict:
        return "stamps is not a mapping"
    for name in ("eta", "expires"):
        value = fields.get(name)
        if value is not None and not _valid_time(value):
            return f"{name} {_shown(value)} is not an ISO 8601 time in the years {TIME_YEARS[0]} to {TIME_YEARS[1]}"
    return None


def _arguments_problem(args: Any, kwargs: Any, embed: Any) -> str | None:
    if type(args) not in (list, tuple):
        return "args is not a list"
    if type(kwargs) is not dict:
        return "kwargs is not a mapping"
    if embed is not None and type(embed) is not dict:
        return "embed is not a mapping"
    if embed and any(embed.get(name) for name in CANVAS_KEYS):
        # Celery runs errbacks and chord parts in the main process when a task fails, from
        # whatever the message says; a platform job's follow-ups are its dependents instead.
        return "callbacks, errbacks, chains and chords are not run by platform tasks (use depends_on)"
    if not args and len(kwargs) == 1 and "job_id" in kwargs:  # the dispatcher's message
        job_id = kwargs["job_id"]
        if type(job_id) is not int or not 1 <= job_id <= JOB_ID_MAX:
            return f"job_id {_shown(job_id)} is not a job id (an integer 1 to {JOB_ID_MAX})"
    return None


def _named_fields(message: Message) -> dict[str, Any]:
    """The fields that name a message (task, id, origin): from the headers, or from a protocol-1
    body when the headers have no task."""
    headers = message.headers if type(message.headers) is dict else {}
    if "task" in headers:
        return headers
    try:
        payload = message.payload
    except Exception:  # noqa: BLE001 - undecodable: the headers are all there is
        return headers
    return {**payload, **headers} if type(payload) is dict else headers


def _valid_time(value: Any) -> bool:
    # Celery's own parser; a year near the ends of datetime's range overflows later, when Celery
    # turns the time into a timestamp, where it logs the arguments.
    try:
        parsed = maybe_iso8601(value)
    except (TypeError, ValueError, AttributeError, OverflowError):
        return False
    return TIME_YEARS[0] <= parsed.year <= TIME_YEARS[1]


def _valid_time_limits(value: Any) -> bool:
    if type(value) not in (list, tuple) or len(value) != 2:
        return False
    return all(
        limit is None or (type(limit) in (int, float) and math.isfinite(limit) and limit >= 0) for limit in value
    )


def _shown(value: Any) -> str:
    """A header value as quoted in a log line: repr (so no line breaks), cut short."""
    text = repr(value)
    return text if len(text) <= SHOWN_CHARS else text[: SHOWN_CHARS - 3] + "..."


def _one_line(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= REASON_CHARS else flat[: REASON_CHARS - 3] + "..."
