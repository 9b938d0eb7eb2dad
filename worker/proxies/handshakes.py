"""Proxy handshakes: turn a TCP connection to a proxy into a tunnel to a target host.

Written from the protocol texts (SOCKS4; RFC 1928 and RFC 1929 for SOCKS5; RFC 9110 section
9.3.6 for HTTP CONNECT) rather than on top of python-socks, because a health check needs two
things that library does not give: one deadline for the whole exchange (it times out each read
separately, so a proxy that trickles bytes can hold a worker far past the timeout), and knowing
which step failed (a SOCKS5 proxy that hangs up right after receiving credentials has rejected
them, which is not the same failure as one that speaks garbage).

Every function here raises `HandshakeFailure` for a proxy that answered but said no or said
nonsense, and lets `TimeoutError`, `EOFError` and `OSError` through: the caller knows the phase
and classifies those.
"""

from __future__ import annotations

import base64
import ipaddress
import socket
from typing import Literal

from worker.proxies.deadline_io import Deadline, recv_exact, send_all

HandshakeErrorClass = Literal["proxy_auth_failed", "proxy_rejected", "proxy_protocol_error"]

# A CONNECT answer is a status line and a few headers; anything longer is not a proxy talking.
_MAX_CONNECT_HEAD_BYTES = 16 * 1024

_SOCKS5_REPLIES = {
    1: "general SOCKS server failure",
    2: "connection not allowed by ruleset",
    3: "network unreachable",
    4: "host unreachable",
    5: "connection refused",
    6: "TTL expired",
    7: "command not supported",
    8: "address type not supported",
}


class HandshakeFailure(Exception):
    """The proxy answered, but refused or did not speak its protocol."""

    def __init__(self, error_class: HandshakeErrorClass, message: str) -> None:
        super().__init__(message)
        self.error_class: HandshakeErrorClass = error_class


def basic_credentials(username: str, password: str | None) -> str:
    token = base64.b64encode(f"{username}:{password or ''}".encode()).decode("ascii")
    return f"Basic {token}"


def socks4_connect(
    sock: socket.socket, deadline: Deadline, target_ip: str, port: int, user_id: str | None
) -> None:
    """SOCKS4 CONNECT; the target must already be an IPv4 address (SOCKS4 carries no names)."""
    packed_ip = ipaddress.IPv4Address(target_ip).packed
    request = b"\x04\x01" + port.to_bytes(2, "big") + packed_ip + (user_id or "").encode() + b"\0"
    send_all(sock, request, deadline)
    version, code = recv_exact(sock, 8, deadline)[:2]
    if version not in (0, 4):  # the spec says 0; some servers echo 4, harmless
        raise HandshakeFailure("proxy_protocol_error", f"not a SOCKS4 reply (version {version})")
    if code == 0x5A:
        return
    if code in (0x5C, 0x5D):
        raise HandshakeFailure("proxy_auth_failed", "SOCKS4 proxy could not verify the user id")
    if code == 0x5B:
        raise HandshakeFailure("proxy_rejected", "SOCKS4 proxy rejected or failed the request")
    raise HandshakeFailure("proxy_protocol_error", f"unknown SOCKS4 reply code {code:#x}")


def socks5_connect(
    sock: socket.socket,
    deadline: Deadline,
    host: str,
    port: int,
    username: str | None,
    password: str | None,
) -> None:
    """SOCKS5 CONNECT with the proxy resolving `host`, after username/password auth if given."""
    # Offer "no auth" too: a proxy that does not need the credentials may skip them.
    send_all(sock, b"\x05\x02\x00\x02" if username is not None else b"\x05\x01\x00", deadline)
    try:
        version, method = recv_exact(sock, 2, deadline)
    except (EOFError, ConnectionResetError) as exc:
        if username is not None:
            raise
        # Some servers hang up instead of answering "no acceptable method" (0xFF); offered
        # only "no auth", that is their way of saying credentials are required.
        raise HandshakeFailure(
            "proxy_auth_failed", "SOCKS5 proxy hung up on a greeting without credentials"
        ) from exc
    if version != 5:
        raise HandshakeFailure("proxy_protocol_error", f"not a SOCKS5 proxy (version {version})")
    if method == 0xFF:
        raise HandshakeFailure("proxy_auth_failed", "SOCKS5 proxy accepted no offered auth method")
    if method == 0x02:
        if username is None:
            raise HandshakeFailure("proxy_auth_failed", "SOCKS5 proxy requires credentials")
        _socks5_authenticate(sock, deadline, username, password or "")
    elif method != 0x00:
        raise HandshakeFailure("proxy_protocol_error", f"SOCKS5 proxy chose method {method}")
    send_all(sock, b"\x05\x01\x00" + _socks5_address(host) + port.to_bytes(2, "big"), deadline)
    version, reply, _reserved, address_type = recv_exact(sock, 4, deadline)
    if version != 5:
        raise HandshakeFailure("proxy_protocol_error", f"not a SOCKS5 reply (version {version})")
    if reply != 0:
        reason = _SOCKS5_REPLIES.get(reply, f"reply code {reply}")
        raise HandshakeFailure("proxy_rejected", f"SOCKS5 proxy could not connect: {reason}")
    # The bound address is of no use to us, but it must be drained: it is not tunnel data.
    if address_type == 1:
        recv_exact(sock, 4 + 2, deadline)
    elif address_type == 4:
        recv_exact(sock, 16 + 2, deadline)
    elif address_type == 3:
        recv_exact(sock, recv_exact(sock, 1, deadline)[0] + 2, deadline)
    else:
        raise HandshakeFailure("proxy_protocol_error", f"bad SOCKS5 address type {address_type}")


def _socks5_authenticate(
    sock: socket.socket, deadline: Deadline, username: str, password: str
) -> None:
    user, secret = username.encode(), password.encode()
    if len(user) > 255 or len(secret) > 255:
        raise HandshakeFailure("proxy_auth_failed", "SOCKS5 credentials exceed 255 bytes")
    send_all(sock, b"\x01" + bytes([len(user)]) + user + bytes([len(secret)]) + secret, deadline)
    try:
        _version, status = recv_exact(sock, 2, deadline)
    except (EOFError, ConnectionResetError) as exc:
        # Many servers hang up instead of sending the failure status RFC 1929 asks for; at
        # this step the credentials are the only thing they could have objected to.
        raise HandshakeFailure(
            "proxy_auth_failed", "SOCKS5 proxy hung up after receiving the credentials"
        ) from exc
    if status != 0:
        raise HandshakeFailure("proxy_auth_failed", "SOCKS5 proxy rejected the credentials")


def _socks5_address(host: str) -> bytes:
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        pass  # a name, which the proxy resolves
    else:
        return (b"\x01" if ip.version == 4 else b"\x04") + ip.packed
    name = host.encode("idna")
    if len(name) > 255:
        raise HandshakeFailure("proxy_protocol_error", "host name too long for SOCKS5")
    return b"\x03" + bytes([len(name)]) + name


def http_connect(
    sock: socket.socket,
    deadline: Deadline,
    host: str,
    port: int,
    username: str | None,
    password: str | None,
) -> None:
    """HTTP CONNECT tunnel; on return the socket carries raw bytes to host:port."""
    authority = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    lines = [f"CONNECT {authority} HTTP/1.1", f"Host: {authority}"]
    if username is not None:
        lines.append(f"Proxy-Authorization: {basic_credentials(username, password)}")
    send_all(sock, ("\r\n".join(lines) + "\r\n\r\n").encode(), deadline)
    status_line = _read_connect_head(sock, deadline).split(b"\r\n", 1)[0]
    parts = status_line.split(b" ", 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/") or not parts[1].isdigit():
        raise HandshakeFailure("proxy_protocol_error", "proxy did not answer CONNECT with HTTP")
    status = int(parts[1])
    if 200 <= status < 300:
        return
    if status == 407:
        sent = "rejected the credentials" if username is not None else "requires credentials"
        raise HandshakeFailure("proxy_auth_failed", f"proxy {sent} (407)")
    # UTF-8 with replacement, never latin-1: mojibake would hide an echoed password from the
    # redaction the checker applies to every message.
    reason = parts[2].decode("utf-8", "replace").strip() if len(parts) > 2 else ""
    raise HandshakeFailure("proxy_rejected", f"proxy answered CONNECT with {status} {reason}")


def _read_connect_head(sock: socket.socket, deadline: Deadline) -> bytes:
    # Byte by byte on purpose: whatever follows the blank line belongs to the tunnel (a TLS
    # handshake, say) and must stay in the socket. The head is small, so this is cheap.
    head = bytearray()
    while not head.endswith(b"\r\n\r\n"):
        if len(head) >= _MAX_CONNECT_HEAD_BYTES:
            raise HandshakeFailure("proxy_protocol_error", "CONNECT answer head too long")
        head += recv_exact(sock, 1, deadline)
    return bytes(head)
