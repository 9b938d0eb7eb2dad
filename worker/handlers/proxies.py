"""Proxy health checks: sweeps (a fan-out into batch jobs, each checking its proxies
concurrently), one check of one proxy, and the bookkeeping of a check.

A sweep's batch job runs `JOBS_PROXY_CHECK_CONCURRENCY` checks at once on threads (a check
waits on the network almost all the time; each is bounded by the checker's own deadline), and
records results as they come, a chunk per transaction, so recording overlaps checking and the
sweep's progress moves while the batch runs. Batches rather than one job per proxy: a job's
own cost (claim, execution row, finish, broker message) is paid per batch, not per proxy, and
any worker pool (prefork too) runs a batch's checks concurrently.

A failed check is a successful job: the job's work is to find out and record, and a failing
proxy is an answer, not an error. The job itself fails only when recording fails.
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor, as_completed

from sqlalchemy import func, insert, select
from sqlalchemy.orm import Session

from shared.crypto import decrypt
from shared.db import get_database
from shared.jobtypes.proxies import CHECK, CHECK_ALL, CHECK_BATCH, ProxyBatch, ProxyCheck
from shared.jobtypes.registry import EmptyPayload
from shared.models.domain import Proxy, ProxyHealthLog
from shared.models.states import ProxyStatus
from shared.outside_text import clean
from shared.settings import get_settings
from shared.workloads.proxies import start_sweep, sweep_checked
from worker.binding import handles
from worker.context import JobContext
from worker.proxies.checker import MAX_ERROR_MESSAGE, CheckResult, ProxyEndpoint, check_proxy
from worker.proxies import sweep_metrics
from worker.proxies.scoring import WINDOW, CheckOutcome, health_score, next_status

# Results recorded per transaction: small enough that progress moves, big enough that a
# transaction's cost is shared.
RECORD_CHUNK = 50


@handles(CHECK_ALL)
def check_all(payload: EmptyPayload, ctx: JobContext) -> None:
    with get_database().session() as session:
        started = start_sweep(session)
        if started.sweep is None:
            running = started.running
            assert running is not None
            ctx.logger.info("proxy sweep %s still running (%d/%d checked): no new sweep", running.id,
                            running.checked, running.total)
            return
        sweep = started.sweep
    ctx.logger.info("proxy sweep %s: %d proxies in %d jobs", sweep.id, sweep.total, sweep.batches)


@handles(CHECK_BATCH)
def check_batch(payload: ProxyBatch, ctx: JobContext) -> None:
    settings = get_settings()
    with get_database().session() as session:
        found = {proxy.id: _endpoint(proxy) for proxy in session.scalars(
            select(Proxy).where(Proxy.id.in_(payload.proxy_ids), Proxy.status != ProxyStatus.DISABLED))}
    endpoints = {proxy_id: found[proxy_id] for proxy_id in payload.proxy_ids if proxy_id in found}
    skipped = len(set(payload.proxy_ids)) - len(endpoints)  # gone or disabled since the sweep began
    done: list[tuple[int, CheckResult]] = []
    recorded = 0
    if not endpoints:
        _record_batch(payload.sweep_id, [], skipped)
    # No transaction is open during the checks; each takes at most the total timeout.
    with ThreadPoolExecutor(max(1, min(settings.proxy_check_concurrency, len(endpoints))), "proxy-check") as pool:
        futures: dict[Future[CheckResult], int] = {
            pool.submit(check_proxy, endpoint, settings.proxy_check_url,
                        connect_timeout=settings.proxy_connect_timeout_seconds,
                        total_timeout=settings.proxy_total_timeout_seconds): proxy_id
            for proxy_id, endpoint in endpoints.items()  # in the sweep's order: likely slow ones first
        }
        left = len(futures)
        for future in as_completed(futures):  # one waiter per future (wait() would add one per call)
            done.append((futures[future], future.result()))
            left -= 1
            if len(done) >= RECORD_CHUNK or not left:
                recorded += _record_batch(payload.sweep_id, done, skipped if not left else 0)
                done = []
                ctx.progress(recorded / max(1, len(endpoints)))
            if ctx.cancelled:  # the checks under way end by their deadline; the rest never start
                pool.shutdown(wait=True, cancel_futures=True)
                break
    ctx.logger.info("proxy sweep %s: %d proxies checked in this job", payload.sweep_id, recorded)


def _record_batch(sweep_id: int, done: list[tuple[int, CheckResult]], skipped: int) -> int:
    disable_after = get_settings().proxy_disable_after_failures
    ok = sum(1 for _, result in done if result.ok)
    with get_database().session() as session:
        record_checks(session, done, disable_after)
        sweep = sweep_checked(session, sweep_id, len(done) + skipped, ok)
        now = session.scalar(select(func.clock_timestamp()))
    if sweep is not None and now is not None:
        seconds = ((sweep.finished_at or now) - sweep.started_at).total_seconds()
        sweep_metrics.observe(sweep, ok, len(done) - ok, seconds)
    return len(done)


def _endpoint(proxy: Proxy) -> ProxyEndpoint:
    return ProxyEndpoint(
        proxy.type,  # type: ignore[arg-type]  # the table's check constraint is the same closed set
        proxy.host, proxy.port, proxy.username,
        decrypt(proxy.password_encrypted) if proxy.password_encrypted else None,
    )


@handles(CHECK)
def check(payload: ProxyCheck, ctx: JobContext) -> None:
    settings = get_settings()
    with get_database().session() as session:
        proxy = session.get(Proxy, payload.proxy_id)
        if proxy is None or proxy.status == ProxyStatus.DISABLED:
            ctx.logger.info("proxy %s is gone or disabled; not checked", payload.proxy_id)
            return
        endpoint = _endpoint(proxy)
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
    return record_checks(session, [(proxy_id, result)], disable_after).get(proxy_id, ("gone", 0))


def record_checks(
    session: Session, checks: list[tuple[int, CheckResult]], disable_after: int,
) -> dict[int, tuple[str, int]]:
    """`record_check` for many proxies in a few statements (a sweep records in chunks): lock
    the proxies (in id order), insert the log rows, read each one's recent window, update."""
    if not checks:
        return {}
    ids = sorted({proxy_id for proxy_id, _ in checks})
    proxies = {p.id: p for p in session.scalars(
        select(Proxy).where(Proxy.id.in_(ids)).order_by(Proxy.id).with_for_update().execution_options(populate_existing=True))}
    checks = [(proxy_id, result) for proxy_id, result in checks if proxy_id in proxies]  # deleted meanwhile
    if not checks:
        return {}
    session.execute(insert(ProxyHealthLog), [{
        "proxy_id": proxy_id, "ok": result.ok, "latency_ms": result.latency_ms, "http_status": result.http_status,
        # The checker cleaned its message already; cleaned again here because this is where it
        # is stored, whoever made the result (a NUL would make the check unrecordable).
        "error_class": result.error_class, "error_message": clean(result.error_message, limit=MAX_ERROR_MESSAGE),
        "exit_ip": clean(result.exit_ip),
    } for proxy_id, result in checks])
    ranked = select(
        ProxyHealthLog.proxy_id, ProxyHealthLog.ok, ProxyHealthLog.latency_ms,
        func.row_number().over(partition_by=ProxyHealthLog.proxy_id,
                               order_by=(ProxyHealthLog.checked_at.desc(), ProxyHealthLog.id.desc())).label("n"),
    ).where(ProxyHealthLog.proxy_id.in_(ids)).subquery()
    recent: dict[int, list[CheckOutcome]] = {}
    for proxy_id, ok, latency, _n in session.execute(
            select(ranked).where(ranked.c.n <= WINDOW).order_by(ranked.c.proxy_id, ranked.c.n.desc())):
        recent.setdefault(proxy_id, []).append(CheckOutcome(ok, latency))  # oldest first
    outcome: dict[int, tuple[str, int]] = {}
    for proxy_id, result in checks:
        proxy = proxies[proxy_id]
        score = health_score(recent.get(proxy_id, []))
        failures = 0 if result.ok else proxy.consecutive_failures + 1
        proxy.status = next_status(proxy.status, score, failures, disable_after=disable_after)
        proxy.health_score, proxy.consecutive_failures = score, failures
        proxy.last_checked_at = func.now()  # the transaction's time: the same as the log rows' checked_at
        if result.latency_ms is not None:
            proxy.last_latency_ms = result.latency_ms
        outcome[proxy_id] = (proxy.status, score)
    return outcome
