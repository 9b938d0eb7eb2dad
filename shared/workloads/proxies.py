"""Proxies: adding them (password encrypted), enabling and disabling, the checks' fan-out
(sweeps), what a check needs to know about a proxy, and the bookkeeping of a check's result
(log row, score, streak, status)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol, Sequence

from sqlalchemy import func, insert, select, update
from sqlalchemy.orm import Session

from shared.crypto import DecryptionError, decrypt, encrypt
from shared.enqueue import enqueue
from shared.errors import NotFound, ValidationError
from shared.jobtypes.proxies import CHECK, CHECK_BATCH
from shared.models.domain import Proxy, ProxyHealthLog, ProxySweep
from shared.models.states import TERMINAL_JOB_STATES, ProxyStatus, ProxyType
from shared.outside_text import clean
from shared.settings import Settings
from shared.store.control import job_state
from shared.workloads.proxy_scoring import WINDOW, CheckOutcome, health_score, next_status

# Proxy ids read per statement by `enqueue_checks`. It bounds each read, not the transaction:
# `enqueue_checks` runs in its caller's transaction (a product's, or `jobctl`'s), as every
# service here does, so its jobs commit with whatever the caller writes.
CHECK_IDS_PAGE = 500
# The most characters of a check's error text a log row keeps (the checker cuts to it too).
MAX_CHECK_ERROR = 1000


def add_proxy(
    session: Session, *, type: str, host: str, port: int, username: str | None = None, password: str | None = None
) -> Proxy:
    """A new proxy: `unchecked`, with no health score, until its first check decides."""
    if type not in set(ProxyType):
        raise ValidationError(f"proxy type must be one of {', '.join(ProxyType)}; got {type!r}", field="type")
    if not host or not host.strip():
        raise ValidationError("proxy host is empty", field="host")
    if not 1 <= port <= 65535:
        raise ValidationError(f"proxy port {port} is out of range 1-65535", field="port")
    if password is not None and not username:
        raise ValidationError("a proxy password needs a username", field="password")
    if type == ProxyType.SOCKS4 and password is not None:
        raise ValidationError("SOCKS4 has a user id but no password", field="password")
    duplicate = session.scalar(select(Proxy.id).where(
        Proxy.type == type, Proxy.host == host.strip(), Proxy.port == port,
        Proxy.username.is_(None) if username is None else Proxy.username == username,
    ))
    if duplicate is not None:
        raise ValidationError(f"proxy {type}://{host}:{port} exists already (id {duplicate})", field="host")
    proxy = Proxy(
        type=type, host=host.strip(), port=port, username=username,
        password_encrypted=encrypt(password) if password else None,
    )
    session.add(proxy)
    session.flush()
    return proxy


def get_proxy(session: Session, proxy_id: int, *, lock: bool = False) -> Proxy:
    proxy = session.get(Proxy, proxy_id, with_for_update=lock)
    if proxy is None:
        raise NotFound(f"no proxy with id {proxy_id}", proxy_id=proxy_id)
    return proxy


def list_proxies(session: Session) -> list[Proxy]:
    return list(session.scalars(select(Proxy).order_by(Proxy.id)))


def set_proxy_enabled(session: Session, proxy_id: int, enabled: bool) -> Proxy:
    """An operator's decision. Enabling starts afresh (status active, no failure streak; still
    unchecked if no check was ever recorded); the next check decides from there."""
    proxy = get_proxy(session, proxy_id, lock=True)
    if enabled:
        never_checked = proxy.health_score is None
        proxy.status = ProxyStatus.UNCHECKED if never_checked else ProxyStatus.ACTIVE
        proxy.consecutive_failures = 0
    else:
        proxy.status = ProxyStatus.DISABLED
    return proxy


def enqueue_check(session: Session, proxy_id: int) -> int:
    """A check of one proxy now; returns the job id (the running one when a check is under way)."""
    get_proxy(session, proxy_id)
    return enqueue(session, CHECK, {"proxy_id": proxy_id}).id


def any_checkable_proxies(session: Session) -> bool:
    """Whether the fan-out would find a proxy to check (the sweep's schedule asks first)."""
    return bool(session.scalar(select(select(Proxy.id).where(Proxy.status != ProxyStatus.DISABLED).exists())))


def enqueue_checks(session: Session) -> tuple[int, int]:
    """A `proxies.check` job (one proxy each) for every proxy that is not disabled (unchecked
    ones, and dead ones too: checks are how they recover); sweeps use `start_sweep` (batch
    jobs) instead. A proxy whose last check is still queued or running keeps that job (the type
    is unique per proxy). Returns (enqueued, already pending)."""
    added = held = 0
    after = 0
    while True:
        ids = list(session.scalars(
            select(Proxy.id).where(Proxy.status != ProxyStatus.DISABLED, Proxy.id > after)
            .order_by(Proxy.id).limit(CHECK_IDS_PAGE)
        ))
        for proxy_id in ids:
            if enqueue(session, CHECK, {"proxy_id": proxy_id}).duplicate:
                held += 1
            else:
                added += 1
        if len(ids) < CHECK_IDS_PAGE:
            return added, held
        after = ids[-1]


@dataclass(frozen=True)
class SweepStart:
    sweep: ProxySweep | None  # the new sweep; None when the previous one is still running
    running: ProxySweep | None = None  # that previous one


def start_sweep(session: Session, batch_size: int) -> SweepStart:
    """A sweep: every proxy that is not disabled, in check jobs of at most `batch_size` proxies
    (JOBS_PROXY_CHECK_BATCH_SIZE; each job checks its proxies concurrently). None while the last
    sweep still has a check job that is not finished (checks of a stalling proxy never pile up);
    a sweep whose jobs all ended before checking everything (they failed for good) is closed then.

    Not paged: the sweep row, its batch jobs and their ids on the row commit together (a sweep
    half made would count proxies no job checks), and the jobs are few (one per `batch_size`
    proxies: 40 for 10,000), so the transaction stays small."""
    size = batch_size
    last = session.scalar(select(ProxySweep).order_by(ProxySweep.id.desc()).limit(1).with_for_update())
    if last is not None and last.finished_at is None:
        states = [job_state(session, job_id) for job_id in last.job_ids]
        if any(state is not None and state not in TERMINAL_JOB_STATES for state in states):
            return SweepStart(None, last)
        last.finished_at = func.clock_timestamp()
    # Likely slow first (failing, then slow, then the rest): a batch starts its long checks
    # while its quick ones fill the other threads, instead of ending on a tail of deadlines.
    ids = list(session.scalars(
        select(Proxy.id).where(Proxy.status != ProxyStatus.DISABLED)
        .order_by(Proxy.consecutive_failures.desc(), Proxy.last_latency_ms.desc().nulls_last(), Proxy.id)))
    # Dealt round-robin, not cut in ranges: proxies come in blocks (a provider's, added
    # together, failing together), and a batch holding a whole stalling block would take many
    # deadlines while the others idle.
    count = -(-len(ids) // size)
    batches = [ids[i::count] for i in range(count)]
    sweep = ProxySweep(total=len(ids), batches=len(batches))
    if not ids:
        sweep.finished_at = func.now()
    session.add(sweep)
    session.flush()
    sweep.job_ids = [
        enqueue(session, CHECK_BATCH, {"sweep_id": sweep.id, "proxy_ids": batch}).id for batch in batches
    ]
    session.flush()
    return SweepStart(sweep)


def sweep_checked(session: Session, sweep_id: int, checked: int, healthy: int) -> ProxySweep | None:
    """Count checks recorded by a sweep's job (capped at the total: a retried job checks again);
    the sweep finishes when every proxy is counted. Returns the sweep as it is now."""
    sweep = session.scalar(
        update(ProxySweep).where(ProxySweep.id == sweep_id)
        .values(checked=func.least(ProxySweep.total, ProxySweep.checked + checked),
                healthy=func.least(ProxySweep.total, ProxySweep.healthy + healthy))
        .returning(ProxySweep)
    )
    if sweep is not None and sweep.finished_at is None and sweep.checked >= sweep.total:
        sweep.finished_at = session.scalar(select(func.clock_timestamp()))
    return sweep


@dataclass(frozen=True)
class SweepView:
    id: int
    started_at: datetime
    finished_at: datetime | None
    total: int
    checked: int
    healthy: int
    batches: int
    seconds: float  # to its finish, or so far


def list_sweeps(session: Session, limit: int = 10) -> list[SweepView]:
    """The latest sweeps, newest first, with their duration (so far, for one still running)."""
    now = session.scalar(select(func.now()))
    return [
        SweepView(s.id, s.started_at, s.finished_at, s.total, s.checked, s.healthy, s.batches,
                  round(((s.finished_at or now) - s.started_at).total_seconds(), 1))
        for s in session.scalars(select(ProxySweep).order_by(ProxySweep.id.desc()).limit(limit))
    ]


@dataclass(frozen=True)
class ProxyAccess:
    """What a check needs to reach a proxy, its password decrypted for this attempt only."""

    id: int
    type: str
    host: str
    port: int
    username: str | None
    password: str | None = field(repr=False)


def proxy_to_check(session: Session, proxy_id: int, settings: Settings) -> ProxyAccess | None:
    """The proxy, unless it is gone or disabled. `DecryptionError` when its password cannot be
    decrypted (no configured key opens it)."""
    proxy = session.get(Proxy, proxy_id)
    if proxy is None or proxy.status == ProxyStatus.DISABLED:
        return None
    return _access(proxy, settings)


@dataclass(frozen=True)
class BatchToCheck:
    proxies: list[ProxyAccess]  # in the batch's order (the sweep's: likely slow ones first)
    skipped: int  # gone or disabled since the sweep began: counted as done, not checked
    undecryptable: list[tuple[int, DecryptionError]]  # not checked either: retrying cannot help


def batch_to_check(session: Session, proxy_ids: Sequence[int], settings: Settings) -> BatchToCheck:
    found = {proxy.id: proxy for proxy in session.scalars(
        select(Proxy).where(Proxy.id.in_(proxy_ids), Proxy.status != ProxyStatus.DISABLED))}
    proxies, undecryptable = [], []
    for proxy_id in dict.fromkeys(proxy_ids):
        if proxy_id in found:
            try:
                proxies.append(_access(found[proxy_id], settings))
            except DecryptionError as exc:
                undecryptable.append((proxy_id, exc))
    skipped = len(set(proxy_ids)) - len(proxies)
    return BatchToCheck(proxies, skipped, undecryptable)


def _access(proxy: Proxy, settings: Settings) -> ProxyAccess:
    password = decrypt(proxy.password_encrypted, settings) if proxy.password_encrypted else None
    return ProxyAccess(proxy.id, proxy.type, proxy.host, proxy.port, proxy.username, password)


class CheckRecord(Protocol):
    """A check's result as it is recorded (the checker's `CheckResult` is one)."""

    @property
    def ok(self) -> bool: ...
    @property
    def latency_ms(self) -> float | None: ...
    @property
    def http_status(self) -> int | None: ...
    @property
    def error_class(self) -> str | None: ...
    @property
    def error_message(self) -> str | None: ...
    @property
    def exit_ip(self) -> str | None: ...


def record_check(session: Session, proxy_id: int, result: CheckRecord, disable_after: int) -> tuple[str, int]:
    """Write the health log row and move the proxy's score, streak and status (under its row
    lock, so two checks finishing together cannot lose an update)."""
    return record_checks(session, [(proxy_id, result)], disable_after).get(proxy_id, ("gone", 0))


def record_checks(
    session: Session, checks: Sequence[tuple[int, CheckRecord]], disable_after: int,
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
        "error_class": result.error_class, "error_message": clean(result.error_message, limit=MAX_CHECK_ERROR),
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


@dataclass(frozen=True)
class SweepProgress:
    sweep: ProxySweep
    seconds: float  # from its start to its finish, or so far


def record_sweep_chunk(
    session: Session, sweep_id: int, checks: Sequence[tuple[int, CheckRecord]], skipped: int, disable_after: int,
) -> SweepProgress | None:
    """A chunk of a sweep's batch: its checks recorded, and counted on the sweep (with the
    batch's proxies that were not checked, so the sweep still finishes)."""
    record_checks(session, checks, disable_after)
    ok = sum(1 for _, result in checks if result.ok)
    sweep = sweep_checked(session, sweep_id, len(checks) + skipped, ok)
    now = session.scalar(select(func.clock_timestamp()))
    if sweep is None or now is None:
        return None
    return SweepProgress(sweep, ((sweep.finished_at or now) - sweep.started_at).total_seconds())
