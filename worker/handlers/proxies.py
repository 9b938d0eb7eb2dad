"""Proxy health checks: sweeps (a fan-out into batch jobs, each checking its proxies
concurrently), and one check of one proxy. What a check reads and writes is the service's
(shared/workloads/proxies.py); here are the checks themselves and their order.

A sweep's batch job runs `JOBS_PROXY_CHECK_CONCURRENCY` checks at once on threads (a check
waits on the network almost all the time; each is bounded by the checker's own deadline), and
records results as they come, a chunk per transaction, so recording overlaps checking and the
sweep's progress moves while the batch runs. Batches rather than one job per proxy: a job's
own cost (claim, execution row, finish, broker message) is paid per batch, not per proxy, and
any worker pool (prefork too) runs a batch's checks concurrently.

A failed check is a successful job: the job's work is to find out and record, and a failing
proxy is an answer, not an error. The job itself fails only when recording fails, or (discarded,
as the other workloads do) when the one proxy it checks has a password no key decrypts.
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor, as_completed

from shared.crypto import DecryptionError
from shared.jobtypes.proxies import CHECK, CHECK_ALL, CHECK_BATCH, ProxyBatch, ProxyCheck
from shared.jobtypes.registry import EmptyPayload
from shared.outcomes import Outcome
from shared.settings import Settings
from shared.workloads import proxies as proxy_service
from shared.workloads import undecryptable
from worker.binding import handles
from worker.context import JobContext
from worker.proxies import sweep_metrics
from worker.proxies.checker import CheckResult, ProxyEndpoint, check_proxy

# Results recorded per transaction: small enough that progress moves, big enough that a
# transaction's cost is shared.
RECORD_CHUNK = 50


@handles(CHECK_ALL)
def check_all(payload: EmptyPayload, ctx: JobContext) -> None:
    with ctx.database.session() as session:
        started = proxy_service.start_sweep(session, ctx.settings.proxy_check_batch_size)
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
    settings = ctx.settings
    with ctx.database.session() as session:
        batch = proxy_service.batch_to_check(session, payload.proxy_ids, settings)
    for proxy_id, exc in batch.undecryptable:
        # One proxy's secret does not cost the others their checks: counted, not checked, and
        # said in the words `proxies.check` would be discarded with.
        ctx.logger.error("not checked: %s", undecryptable(f"proxy {proxy_id}", exc).reason)
    endpoints = {proxy.id: _endpoint(proxy) for proxy in batch.proxies}
    done: list[tuple[int, CheckResult]] = []
    recorded = 0
    if not endpoints:
        _record_chunk(ctx, payload.sweep_id, [], batch.skipped)
    # No transaction is open during the checks; each takes at most the total timeout.
    with ThreadPoolExecutor(max(1, min(settings.proxy_check_concurrency, len(endpoints))), "proxy-check") as pool:
        futures: dict[Future[CheckResult], int] = {
            pool.submit(_check, endpoint, settings): proxy_id
            for proxy_id, endpoint in endpoints.items()  # in the sweep's order: likely slow ones first
        }
        left = len(futures)
        for future in as_completed(futures):  # one waiter per future (wait() would add one per call)
            done.append((futures[future], future.result()))
            left -= 1
            if len(done) >= RECORD_CHUNK or not left:
                recorded += _record_chunk(ctx, payload.sweep_id, done, batch.skipped if not left else 0)
                done = []
                ctx.progress(recorded / max(1, len(endpoints)))
            if ctx.cancelled:  # the checks under way end by their deadline; the rest never start
                pool.shutdown(wait=True, cancel_futures=True)
                break
    ctx.logger.info("proxy sweep %s: %d proxies checked in this job", payload.sweep_id, recorded)


def _record_chunk(ctx: JobContext, sweep_id: int, done: list[tuple[int, CheckResult]], skipped: int) -> int:
    with ctx.database.session() as session:
        progress = proxy_service.record_sweep_chunk(
            session, sweep_id, done, skipped, ctx.settings.proxy_disable_after_failures)
    if progress is not None:
        ok = sum(1 for _, result in done if result.ok)
        sweep_metrics.observe(progress.sweep, ok, len(done) - ok, progress.seconds)
    return len(done)


@handles(CHECK)
def check(payload: ProxyCheck, ctx: JobContext) -> Outcome | None:
    try:
        with ctx.database.session() as session:
            proxy = proxy_service.proxy_to_check(session, payload.proxy_id, ctx.settings)
    except DecryptionError as exc:
        return undecryptable(f"proxy {payload.proxy_id}", exc)
    if proxy is None:
        ctx.logger.info("proxy %s is gone or disabled; not checked", payload.proxy_id)
        return None
    endpoint = _endpoint(proxy)
    # No transaction is open during the check: it may take the whole total timeout.
    result = _check(endpoint, ctx.settings)
    with ctx.database.session() as session:
        status, score = proxy_service.record_check(
            session, payload.proxy_id, result, ctx.settings.proxy_disable_after_failures)
    # `endpoint` prints with its password masked; the checker scrubbed its message already.
    ctx.logger.info(
        "proxy %s via %s: %s%s, score %d, status %s", payload.proxy_id, endpoint,
        "ok" if result.ok else result.error_class, f" in {result.latency_ms:.0f} ms" if result.latency_ms else "",
        score, status,
    )
    return None


def _check(endpoint: ProxyEndpoint, settings: Settings) -> CheckResult:
    return check_proxy(
        endpoint, settings.proxy_check_url,
        connect_timeout=settings.proxy_connect_timeout_seconds, total_timeout=settings.proxy_total_timeout_seconds,
    )


def _endpoint(proxy: proxy_service.ProxyAccess) -> ProxyEndpoint:
    return ProxyEndpoint(
        proxy.type,  # type: ignore[arg-type]  # the table's check constraint is the same closed set
        proxy.host, proxy.port, proxy.username, proxy.password,
    )
