"""Proxy health checks: the fan-out, and one check of one proxy with its bookkeeping.

A failed check is a successful job: the job's work is to find out and record, and a failing
proxy is an answer, not an error. The job itself fails only when recording fails.
"""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from shared.crypto import decrypt
from shared.db import get_database
from shared.jobtypes.proxies import CHECK, CHECK_ALL, ProxyCheck
from shared.jobtypes.registry import EmptyPayload
from shared.models.domain import Proxy, ProxyHealthLog
from shared.models.states import ProxyStatus
from shared.outside_text import clean
from shared.settings import get_settings
from shared.workloads.proxies import enqueue_checks
from worker.binding import handles
from worker.context import JobContext
from worker.proxies.checker import MAX_ERROR_MESSAGE, CheckResult, ProxyEndpoint, check_proxy
from worker.proxies.scoring import WINDOW, CheckOutcome, health_score, next_status


@handles(CHECK_ALL)
def check_all(payload: EmptyPayload, ctx: JobContext) -> None:
    with get_database().session() as session:
        added, held = enqueue_checks(session)
    ctx.logger.info("proxy checks: %d enqueued, %d still pending from before", added, held)


@handles(CHECK)
def check(payload: ProxyCheck, ctx: JobContext) -> None:
    settings = get_settings()
    with get_database().session() as session:
        proxy = session.get(Proxy, payload.proxy_id)
        if proxy is None or proxy.status == ProxyStatus.DISABLED:
            ctx.logger.info("proxy %s is gone or disabled; not checked", payload.proxy_id)
            return
        endpoint = ProxyEndpoint(
            proxy.type,  # type: ignore[arg-type]  # the table's check constraint is the same closed set
            proxy.host, proxy.port, proxy.username,
            decrypt(proxy.password_encrypted) if proxy.password_encrypted else None,
        )
    # No transaction is open during the check: it may take the whole total timeout.
    result = check_proxy(
        endpoint, settings.proxy_check_url,
        connect_timeout=settings.proxy_connect_timeout_seconds, total_timeout=settings.proxy_total_timeout_seconds,
    )
    with get_database().session() as session:
        status, score = record_check(session, payload.proxy_id, result, settings.proxy_disable_after_failures)
    # `endpoint` prints with its password masked; the checker scrubbed its message already.
    ctx.logger.info(
        "proxy %s via %s: %s%s, score %d, status %s", payload.proxy_id, endpoint,
        "ok" if result.ok else result.error_class, f" in {result.latency_ms:.0f} ms" if result.latency_ms else "",
        score, status,
    )


def record_check(session: Session, proxy_id: int, result: CheckResult, disable_after: int) -> tuple[str, int]:
    """Write the health log row and move the proxy's score, streak and status (under its row
    lock, so two checks finishing together cannot lose an update)."""
    proxy = session.get(Proxy, proxy_id, with_for_update=True, populate_existing=True)
    if proxy is None:
        return "gone", 0
    session.add(ProxyHealthLog(
        proxy_id=proxy_id, ok=result.ok, latency_ms=result.latency_ms, http_status=result.http_status,
        # The checker cleaned its message already; cleaned again here because this is where it
        # is stored, whoever made the result (a NUL would make the check unrecordable).
        error_class=result.error_class, error_message=clean(result.error_message, limit=MAX_ERROR_MESSAGE),
        exit_ip=clean(result.exit_ip),
    ))
    session.flush()
    recent = session.execute(
        select(ProxyHealthLog.ok, ProxyHealthLog.latency_ms).where(ProxyHealthLog.proxy_id == proxy_id)
        .order_by(ProxyHealthLog.checked_at.desc(), ProxyHealthLog.id.desc()).limit(WINDOW)
    ).all()
    score = health_score([CheckOutcome(ok, latency) for ok, latency in reversed(recent)])
    failures = 0 if result.ok else proxy.consecutive_failures + 1
    proxy.status = next_status(proxy.status, score, failures, disable_after=disable_after)
    proxy.health_score, proxy.consecutive_failures = score, failures
    proxy.last_checked_at = func.now()  # the transaction's time: the same as the log row's checked_at
    if result.latency_ms is not None:
        proxy.last_latency_ms = result.latency_ms
    return proxy.status, score
