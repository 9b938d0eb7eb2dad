"""Proxies: adding them (password encrypted), enabling and disabling, and the fan-out of checks."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from shared.crypto import encrypt
from shared.enqueue import enqueue
from shared.errors import NotFound, ValidationError
from shared.jobtypes.proxies import CHECK
from shared.models.domain import Proxy
from shared.models.states import ProxyStatus, ProxyType

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
    """The fan-out: a check job for every proxy that is not disabled (unchecked ones, and dead
    ones too: checks are how they recover). A proxy whose last check is still queued or running keeps that job
    (the type is unique per proxy). Returns (enqueued, already pending)."""
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
