"""Check one proxy: connect through it to a check URL, GET the URL, time the answer.

Synchronous and free of I/O other than the check itself, because it runs inside a Celery
prefork task and the caller owns the database. A network failure never raises: it becomes a
`CheckResult` with `ok=False` and an `error_class` from the closed set `ERROR_CLASSES`, so the
caller can count failures by kind without parsing messages. One deadline (`total_timeout`)
bounds everything from name resolution to the last body byte, so a proxy that accepts the TCP
connection and then stalls (or trickles one byte a second) cannot hold a worker.

Passwords never appear in text this module produces: `ProxyEndpoint` masks them in repr/str and
every error message goes through `shared.outside_text.clean` with the password as the secret
(every encoding of it: mojibake of a reason phrase, percent-encoding, the Basic token, ...),
which also drops what a `text` column cannot hold (a proxy may answer with NUL bytes).
"""

from __future__ import annotations

import functools
import http.client
import ipaddress
import json
import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, get_args
from urllib.parse import urlsplit

from shared.outside_text import clean
from shared.workloads.proxies import MAX_CHECK_ERROR
from worker.proxies.deadline_io import (
    Deadline,
    DeadlineSocket,
    connect_any,
    resolve,
    resolve_ipv4,
    send_all,
)
from worker.proxies.handshakes import (
    HandshakeFailure,
    basic_credentials,
    http_connect,
    socks4_connect,
    socks5_connect,
)

ProxyScheme = Literal["http", "https", "socks4", "socks5"]
ErrorClass = Literal[
    "dns_error",  # a name (the proxy's; the check host's for SOCKS4) did not resolve in time
    "connect_refused",  # nothing listens on the proxy's port
    "connect_timeout",  # no TCP connection, or the proxy handshake did not finish, in time
    "connect_error",  # any other failure to reach the proxy (unreachable network, ...)
    "proxy_auth_failed",  # the proxy wants credentials, or other ones
    "proxy_rejected",  # the proxy refused to reach the check host
    "proxy_protocol_error",  # the proxy does not speak the protocol it is listed with
    "tls_error",  # TLS with the check host, inside the tunnel, failed
    "read_timeout",  # connected, but the full HTTP answer did not arrive in time
    "connection_closed",  # the connection dropped after the tunnel was up
    "http_error",  # an HTTP answer whose status is not 2xx
    "unknown",
]
ERROR_CLASSES: tuple[ErrorClass, ...] = get_args(ErrorClass)

# Enough for any "what is my IP" answer; a bigger body is cut, not waited for.
_MAX_BODY_BYTES = 64 * 1024
_USER_AGENT = "jobplatform-proxy-check/1"
# The most characters of an error message a check reports (proxy_health_logs.error_message).
MAX_ERROR_MESSAGE = MAX_CHECK_ERROR  # what a log row keeps
_Phase = Literal["resolve", "connect", "handshake", "tls", "http"]


@dataclass(frozen=True, repr=False)
class ProxyEndpoint:
    scheme: ProxyScheme
    host: str
    port: int
    username: str | None = None
    password: str | None = None

    def __post_init__(self) -> None:
        if self.scheme not in get_args(ProxyScheme):
            raise ValueError(f"unknown proxy scheme {self.scheme!r}")
        if not self.host:
            raise ValueError("proxy host is empty")
        if not 1 <= self.port <= 65535:
            raise ValueError(f"proxy port {self.port} is out of range")
        if self.password is not None and self.username is None:
            raise ValueError("a proxy password needs a username")

    def __repr__(self) -> str:
        secret = None if self.password is None else "***"
        return (
            f"ProxyEndpoint(scheme={self.scheme!r}, host={self.host!r}, port={self.port}, "
            f"username={self.username!r}, password={secret!r})"
        )

    def __str__(self) -> str:
        userinfo = "" if self.username is None else self.username
        if self.password is not None:
            userinfo += ":***"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{userinfo + '@' if userinfo else ''}{host}:{self.port}"


@dataclass(frozen=True)
class CheckResult:
    ok: bool
    latency_ms: float | None  # start to full answer (head + body up to 64 KiB)
    http_status: int | None
    error_class: ErrorClass | None
    error_message: str | None
    exit_ip: str | None


@dataclass(frozen=True)
class _Target:
    scheme: str
    host: str
    port: int
    origin_form: str  # "/path?query", for a request inside a tunnel
    absolute_form: str  # "http://host:port/path?query", for a plain HTTP proxy
    host_header: str


def check_proxy(
    proxy: ProxyEndpoint,
    check_url: str,
    *,
    connect_timeout: float,
    total_timeout: float,
    clock: Callable[[], float] = time.perf_counter,
    ssl_context: ssl.SSLContext | None = None,
) -> CheckResult:
    """GET `check_url` through `proxy`; never raises for a network failure.

    `connect_timeout` bounds each TCP connection attempt to the proxy, `total_timeout` the whole
    check. `clock` only measures latency. `ssl_context` is for an https check URL served under a
    private CA; the default verifies against the system roots. Bad arguments raise ValueError.
    """
    target = _parse_check_url(check_url)
    if connect_timeout <= 0 or total_timeout <= 0:
        raise ValueError("timeouts must be positive")
    attempt = _Attempt(proxy, target, Deadline(total_timeout), connect_timeout, ssl_context)
    started = clock()
    try:
        status, body = attempt.run()
    except Exception as exc:  # the contract: failures are values, whatever raised them
        error_class, message = _classify(exc, attempt.phase)
        return CheckResult(False, None, None, error_class, error_text(message, proxy), None)
    finally:
        attempt.close()
    latency_ms = (clock() - started) * 1000.0
    if 200 <= status < 300:
        return CheckResult(True, latency_ms, status, None, None, _exit_ip(body))
    # A plain HTTP proxy reports its own auth failure as the response status.
    status_class: ErrorClass = (
        "proxy_auth_failed" if status == 407 and proxy.scheme == "http" else "http_error"
    )
    return CheckResult(False, latency_ms, status, status_class, f"HTTP status {status}", None)


class _Attempt:
    """One check's socket and how far it got; the phase decides how a failure is named."""

    def __init__(
        self,
        proxy: ProxyEndpoint,
        target: _Target,
        deadline: Deadline,
        connect_timeout: float,
        ssl_context: ssl.SSLContext | None,
    ) -> None:
        self.proxy, self.target, self.deadline = proxy, target, deadline
        self.connect_timeout, self.ssl_context = connect_timeout, ssl_context
        self.phase: _Phase = "resolve"
        self.sock: socket.socket | None = None

    def run(self) -> tuple[int, bytes]:
        proxy, target, deadline = self.proxy, self.target, self.deadline
        addresses = resolve(proxy.host, proxy.port, deadline)
        # SOCKS4 carries only IPv4 addresses, so the check host is resolved here, not remotely.
        socks4_ip = resolve_ipv4(target.host, deadline) if proxy.scheme == "socks4" else ""
        self.phase = "connect"
        self.sock = connect_any(addresses, self.connect_timeout, deadline)
        self.phase = "handshake"
        tunnel = proxy.scheme != "http" or target.scheme == "https"  # like curl: https needs one
        if tunnel:
            self._open_tunnel(self.sock, socks4_ip)
        if target.scheme == "https":
            self.phase = "tls"
            context = self.ssl_context or _default_tls_context()
            deadline.arm(self.sock)  # CPython bounds the whole handshake by one timeout
            self.sock = context.wrap_socket(self.sock, server_hostname=target.host)
        self.phase = "http"
        send_all(self.sock, self._request(absolute=not tunnel), deadline)
        reader = DeadlineSocket(self.sock, deadline)
        response = http.client.HTTPResponse(reader)  # type: ignore[arg-type]
        try:
            response.begin()
            return response.status, response.read(_MAX_BODY_BYTES)
        finally:
            response.close()

    def _open_tunnel(self, sock: socket.socket, socks4_ip: str) -> None:
        proxy, host, port = self.proxy, self.target.host, self.target.port
        if proxy.scheme == "socks4":
            socks4_connect(sock, self.deadline, socks4_ip, port, proxy.username)
        elif proxy.scheme == "socks5":
            socks5_connect(sock, self.deadline, host, port, proxy.username, proxy.password)
        else:
            http_connect(sock, self.deadline, host, port, proxy.username, proxy.password)

    def _request(self, *, absolute: bool) -> bytes:
        target = self.target
        lines = [
            f"GET {target.absolute_form if absolute else target.origin_form} HTTP/1.1",
            f"Host: {target.host_header}",
            f"User-Agent: {_USER_AGENT}",
            "Accept: */*",
            "Connection: close",
        ]
        if absolute and self.proxy.username is not None:
            credentials = basic_credentials(self.proxy.username, self.proxy.password)
            lines.append(f"Proxy-Authorization: {credentials}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode()

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()


@functools.cache
def _default_tls_context() -> ssl.SSLContext:
    # Loading the system roots costs milliseconds; once per worker process is enough. Built
    # lazily, so each prefork child makes its own after the fork.
    return ssl.create_default_context()


def _parse_check_url(check_url: str) -> _Target:
    parts = urlsplit(check_url)
    if parts.scheme not in ("http", "https") or not parts.hostname or not check_url.isascii():
        raise ValueError(f"check_url must be an absolute ASCII http(s) URL: {check_url!r}")
    origin_form = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    host_header = parts.netloc.rsplit("@", 1)[-1]
    return _Target(
        scheme=parts.scheme,
        host=parts.hostname,
        port=parts.port or (443 if parts.scheme == "https" else 80),
        origin_form=origin_form,
        absolute_form=f"{parts.scheme}://{host_header}{origin_form}",
        host_header=host_header,
    )


def _classify(exc: Exception, phase: _Phase) -> tuple[ErrorClass, str]:
    detail = f"{phase}: {type(exc).__name__}: {exc}"
    if isinstance(exc, HandshakeFailure):
        return exc.error_class, f"{phase}: {exc}"
    if phase == "resolve" or isinstance(exc, socket.gaierror):
        return "dns_error", detail
    if isinstance(exc, TimeoutError):  # socket.timeout is TimeoutError since Python 3.10
        return ("connect_timeout" if phase in ("connect", "handshake") else "read_timeout"), detail
    if phase == "connect":
        if isinstance(exc, ConnectionRefusedError):
            return "connect_refused", detail
        return ("connect_error" if isinstance(exc, OSError) else "unknown"), detail
    if isinstance(exc, (ssl.SSLError, ssl.CertificateError)):
        return "tls_error", detail
    if isinstance(exc, (EOFError, ConnectionError, http.client.IncompleteRead)):
        # Hanging up mid-handshake is the proxy failing its protocol; later, the line dropped.
        return ("proxy_protocol_error" if phase == "handshake" else "connection_closed"), detail
    if isinstance(exc, http.client.HTTPException):
        return "proxy_protocol_error", detail  # what came back was not HTTP
    return "unknown", detail


def error_text(message: str | bytes, proxy: ProxyEndpoint) -> str:
    """A failure's words as they may be stored: cleaned, the password redacted, then cut."""
    return clean(message, secrets=(proxy.password,), limit=MAX_ERROR_MESSAGE)


def _exit_ip(body: bytes) -> str | None:
    """The caller address a check endpoint reports: {"ip": ...}, {"origin": ...} or plain text."""
    text = body.decode("utf-8", "replace").strip()
    candidate: object = text
    if text.startswith("{"):
        try:
            data = json.loads(text)
        except ValueError:
            return None
        candidate = data.get("ip") or data.get("origin") if isinstance(data, dict) else None
    if not isinstance(candidate, str):
        return None
    try:  # httpbin's "origin" may list a chain, "client, proxy"; the first is the caller
        return str(ipaddress.ip_address(candidate.split(",")[0].strip()))
    except ValueError:
        return None
