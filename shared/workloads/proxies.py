"""Proxies: adding them (password encrypted), enabling and disabling, and the fan-out of checks."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from shared.crypto import encrypt
from shared.enqueue import enqueue
from shared.errors import NotFound, ValidationError
from shared.jobtypes.proxies import CHECK, CHECK_BATCH
from shared.models.domain import Proxy, ProxySweep
from shared.models.states import TERMINAL_JOB_STATES, ProxyStatus, ProxyType
from shared.settings import get_settings
from shared.store.control import job_state

# Proxies enqueued per statement batch by the fan-out; bounds one transaction's size.
FAN_OUT_PAGE = 500


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
            .order_by(Proxy.id).limit(FAN_OUT_PAGE)
        ))
        for proxy_id in ids:
            if enqueue(session, CHECK, {"proxy_id": proxy_id}).duplicate:
                held += 1
            else:
                added += 1
        if len(ids) < FAN_OUT_PAGE:
            return added, held
        after = ids[-1]


@dataclass(frozen=True)
class SweepStart:
    sweep: ProxySweep | None  # the new sweep; None when the previous one is still running
    running: ProxySweep | None = None  # that previous one


def start_sweep(session: Session, batch_size: int | None = None) -> SweepStart:
    """A sweep: every proxy that is not disabled, in check jobs of at most `batch_size` proxies
    (each job checks its proxies concurrently). None while the last sweep still has a check job that
    is not finished (checks of a stalling proxy never pile up); a sweep whose jobs all ended
    before checking everything (they failed for good) is closed then."""
    size = batch_size or get_settings().proxy_check_batch_size
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
