"""Proxy health checks: one check job per proxy, fanned out by a recurring schedule."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import Field

from shared.jobtypes.recurring import recurring
from shared.jobtypes.registry import EmptyPayload, Payload, declare, function_at

if TYPE_CHECKING:
    from shared.settings import Settings


class ProxyCheck(Payload):
    proxy_id: int = Field(gt=0)  # an id only: the handler reads (and decrypts) the rest


CHECK = declare(
    "proxies.check", ProxyCheck,
    pool="io", queue="low", max_attempts=2,
    # A check bounds itself by the total timeout; the job's limit only catches a stuck process.
    timeout_seconds=lambda s: s.proxy_total_timeout_seconds + 30,
    # One check per proxy at a time: a slow check makes the next fan-out skip that proxy, so
    # checks of a stalling proxy never pile up.
    unique_by=("proxy_id",),
    description="Connects through one proxy to the check URL and records its health.",
)


class ProxyBatch(Payload):
    sweep_id: int = Field(gt=0)
    proxy_ids: list[int] = Field(min_length=1, max_length=10_000)  # ids only: the handler reads the rest


def _batch_timeout(settings: Settings) -> float:
    # A batch's checks run `proxy_check_concurrency` at a time, each bounded by the total
    # timeout: the slowest batch (every check stalling) takes this many rounds of it.
    rounds = -(-settings.proxy_check_batch_size // settings.proxy_check_concurrency)
    return rounds * settings.proxy_total_timeout_seconds + 60


CHECK_BATCH = declare(
    "proxies.check_batch", ProxyBatch,
    # IO-bound like a single check: a batch waits on its proxies, so it runs on the IO worker
    # class's threads, not in a prefork process held for the whole batch.
    pool="io", queue="low", max_attempts=2,
    timeout_seconds=_batch_timeout,
    description="Checks a sweep's batch of proxies concurrently and records each one's health.",
)


CHECK_ALL = declare(
    "proxies.check_all", EmptyPayload,
    pool="io", queue="low", max_attempts=1, timeout_seconds=300,
    has_work=function_at("shared.workloads.proxies:any_checkable_proxies"),
    description="Starts a proxy sweep: the proxies that are not disabled, in proxies.check_batch jobs.",
)

recurring(
    CHECK_ALL, cron=lambda s: s.proxy_check_cron, when=lambda s: s.workload_schedules,
    name="proxies.check_all", misfire="skip",
)
