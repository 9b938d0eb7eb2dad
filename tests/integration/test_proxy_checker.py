"""check_proxy against real proxies (pproxy subprocesses) and real sockets on 127.0.0.1."""
# The rig's fixtures are imported by name and then requested as parameters of the same name.
# ruff: noqa: F811

from __future__ import annotations

import base64
import dataclasses
import ssl
import time
from typing import Any

import pytest

from tests.rigs.proxies import (  # noqa: F401 (fixtures are found by name in this module)
    HOST,
    PROXY_PASSWORD,
    PROXY_USER,
    check_endpoint,
    closed_port,
    http_proxy,
    http_proxy_auth,
    socks4_proxy,
    socks5_proxy_auth,
    stalling_proxy,
    tls_check_endpoint,
    trickling_proxy,
)
from worker.proxies.checker import (
    ERROR_CLASSES,
    CheckResult,
    ProxyEndpoint,
    ProxyScheme,
    check_proxy,
)

TIMEOUTS: dict[str, Any] = {"connect_timeout": 2.0, "total_timeout": 5.0}
SCHEMES: tuple[ProxyScheme, ...] = ("http", "https", "socks4", "socks5")
WRONG_PASSWORD = "Wr0ng-pw-4711"


def with_password(proxy: ProxyEndpoint, password: str | None) -> ProxyEndpoint:
    return dataclasses.replace(proxy, password=password)


def assert_ok(result: CheckResult) -> None:
    assert result.error_message is None, result.error_message
    assert result.ok and result.http_status == 200 and result.error_class is None
    assert result.latency_ms is not None and result.latency_ms > 0
    assert result.exit_ip == "127.0.0.1"


def test_http_proxy_ok(http_proxy: ProxyEndpoint, check_endpoint: str) -> None:
    assert_ok(check_proxy(http_proxy, check_endpoint, **TIMEOUTS))


def test_exit_ip_from_a_plain_text_body(http_proxy: ProxyEndpoint, check_endpoint: str) -> None:
    assert_ok(check_proxy(http_proxy, check_endpoint + "text", **TIMEOUTS))


def test_non_2xx_is_http_error_with_status_and_latency(
    http_proxy: ProxyEndpoint, check_endpoint: str
) -> None:
    result = check_proxy(http_proxy, check_endpoint + "status/503", **TIMEOUTS)
    assert (result.ok, result.http_status, result.error_class) == (False, 503, "http_error")
    assert result.latency_ms is not None and result.latency_ms > 0


def test_https_connect_with_auth_ok(http_proxy_auth: ProxyEndpoint, check_endpoint: str) -> None:
    assert http_proxy_auth.scheme == "https"
    assert_ok(check_proxy(http_proxy_auth, check_endpoint, **TIMEOUTS))


def test_plain_http_with_auth_ok(http_proxy_auth: ProxyEndpoint, check_endpoint: str) -> None:
    proxy = dataclasses.replace(http_proxy_auth, scheme="http")
    assert_ok(check_proxy(proxy, check_endpoint, **TIMEOUTS))


@pytest.mark.parametrize("scheme", ["http", "https"])
@pytest.mark.parametrize("password", [WRONG_PASSWORD, None])
def test_http_proxy_wrong_or_missing_credentials(
    http_proxy_auth: ProxyEndpoint,
    check_endpoint: str,
    scheme: ProxyScheme,
    password: str | None,
) -> None:
    username = None if password is None else PROXY_USER
    proxy = dataclasses.replace(
        http_proxy_auth, scheme=scheme, username=username, password=password
    )
    result = check_proxy(proxy, check_endpoint, **TIMEOUTS)
    assert (result.ok, result.error_class) == (False, "proxy_auth_failed")
    if scheme == "http":
        assert result.http_status == 407  # a plain proxy answers the GET itself


def test_socks5_right_password_ok(socks5_proxy_auth: ProxyEndpoint, check_endpoint: str) -> None:
    assert_ok(check_proxy(socks5_proxy_auth, check_endpoint, **TIMEOUTS))


def test_socks5_wrong_password(socks5_proxy_auth: ProxyEndpoint, check_endpoint: str) -> None:
    proxy = with_password(socks5_proxy_auth, WRONG_PASSWORD)
    result = check_proxy(proxy, check_endpoint, **TIMEOUTS)
    assert (result.ok, result.error_class) == (False, "proxy_auth_failed")


def test_socks5_without_credentials(socks5_proxy_auth: ProxyEndpoint, check_endpoint: str) -> None:
    proxy = dataclasses.replace(socks5_proxy_auth, username=None, password=None)
    result = check_proxy(proxy, check_endpoint, **TIMEOUTS)
    assert (result.ok, result.error_class) == (False, "proxy_auth_failed")


def test_socks4_ok(socks4_proxy: ProxyEndpoint, check_endpoint: str) -> None:
    assert socks4_proxy.username == PROXY_USER  # sent as the SOCKS4 user id
    assert_ok(check_proxy(socks4_proxy, check_endpoint, **TIMEOUTS))


@pytest.mark.parametrize("scheme", SCHEMES)
def test_closed_port_is_connect_refused(
    closed_port: int, check_endpoint: str, scheme: ProxyScheme
) -> None:
    proxy = ProxyEndpoint(scheme, HOST, closed_port, PROXY_USER, PROXY_PASSWORD)
    result = check_proxy(proxy, check_endpoint, **TIMEOUTS)
    assert (result.ok, result.error_class, result.latency_ms) == (False, "connect_refused", None)


@pytest.mark.parametrize("scheme", SCHEMES)
def test_stalling_proxy_times_out_within_total_timeout(
    stalling_proxy: int, check_endpoint: str, scheme: ProxyScheme
) -> None:
    proxy = ProxyEndpoint(scheme, HOST, stalling_proxy, PROXY_USER)
    started = time.monotonic()
    result = check_proxy(proxy, check_endpoint, connect_timeout=1.0, total_timeout=1.0)
    elapsed = time.monotonic() - started
    assert not result.ok and result.error_class in ("connect_timeout", "read_timeout")
    assert 0.9 < elapsed < 2.5


def test_trickling_proxy_is_cut_at_total_timeout(trickling_proxy: int, check_endpoint: str) -> None:
    # Each read gets a byte within 0.2 s, so per-read timeouts alone would wait forever.
    proxy = ProxyEndpoint("http", HOST, trickling_proxy)
    started = time.monotonic()
    result = check_proxy(proxy, check_endpoint, connect_timeout=1.0, total_timeout=1.0)
    assert (result.ok, result.error_class) == (False, "read_timeout")
    assert time.monotonic() - started < 2.5


def test_unresolvable_proxy_host_is_dns_error(check_endpoint: str) -> None:
    proxy = ProxyEndpoint("socks5", "proxy.invalid", 1080)  # .invalid never resolves (RFC 6761)
    result = check_proxy(proxy, check_endpoint, connect_timeout=1.0, total_timeout=1.0)
    assert (result.ok, result.error_class) == (False, "dns_error")


@pytest.mark.parametrize("which", ["https", "socks5"])
def test_tls_check_url_inside_the_tunnel(
    request: pytest.FixtureRequest,
    tls_check_endpoint: tuple[str, ssl.SSLContext],
    which: str,
) -> None:
    fixture = {"https": "http_proxy_auth", "socks5": "socks5_proxy_auth"}[which]
    proxy = request.getfixturevalue(fixture)
    url, trusting_context = tls_check_endpoint
    assert_ok(check_proxy(proxy, url, **TIMEOUTS, ssl_context=trusting_context))


def test_untrusted_certificate_is_tls_error(
    http_proxy_auth: ProxyEndpoint, tls_check_endpoint: tuple[str, ssl.SSLContext]
) -> None:
    url, _trusting_context = tls_check_endpoint
    result = check_proxy(http_proxy_auth, url, **TIMEOUTS)  # default context: system roots
    assert (result.ok, result.error_class) == (False, "tls_error")


def test_latency_comes_from_the_injected_clock(
    http_proxy: ProxyEndpoint, check_endpoint: str
) -> None:
    ticks = iter([100.0, 100.25])
    result = check_proxy(http_proxy, check_endpoint, **TIMEOUTS, clock=lambda: next(ticks))
    assert result.ok and result.latency_ms == pytest.approx(250.0)


def test_password_never_in_repr_or_str() -> None:
    proxy = ProxyEndpoint("socks5", HOST, 1080, PROXY_USER, PROXY_PASSWORD)
    for text in (repr(proxy), str(proxy), f"{proxy}", repr([proxy])):
        assert PROXY_PASSWORD not in text and "***" in text
    assert str(proxy) == f"socks5://{PROXY_USER}:***@{HOST}:1080"


def test_password_never_in_error_messages(
    http_proxy_auth: ProxyEndpoint,
    socks5_proxy_auth: ProxyEndpoint,
    closed_port: int,
    stalling_proxy: int,
    check_endpoint: str,
) -> None:
    secrets = (PROXY_PASSWORD, WRONG_PASSWORD)
    tokens = [base64.b64encode(f"{PROXY_USER}:{s}".encode()).decode() for s in secrets]
    failing = [
        with_password(http_proxy_auth, WRONG_PASSWORD),
        dataclasses.replace(http_proxy_auth, scheme="http", password=WRONG_PASSWORD),
        with_password(socks5_proxy_auth, WRONG_PASSWORD),
        ProxyEndpoint("socks5", HOST, closed_port, PROXY_USER, PROXY_PASSWORD),
        ProxyEndpoint("https", HOST, stalling_proxy, PROXY_USER, PROXY_PASSWORD),
    ]
    for proxy in failing:
        result = check_proxy(proxy, check_endpoint, connect_timeout=0.5, total_timeout=0.5)
        assert not result.ok and result.error_message
        assert result.error_class in ERROR_CLASSES
        for leak in (*secrets, *tokens):
            assert leak not in result.error_message


def test_bad_arguments_raise() -> None:
    with pytest.raises(ValueError):
        ProxyEndpoint("ftp", HOST, 21)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        ProxyEndpoint("http", HOST, 0)
    with pytest.raises(ValueError):
        ProxyEndpoint("http", HOST, 8080, password="orphan")
    with pytest.raises(ValueError):
        check_proxy(ProxyEndpoint("http", HOST, 8080), "ftp://example.com/", **TIMEOUTS)
