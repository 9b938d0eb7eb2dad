"""Socket I/O under one deadline: resolve, connect, send and receive until a fixed moment.

A socket timeout bounds one call, not an exchange: a peer that sends a byte just before each
timeout can keep a reader forever. Everything here re-arms the socket with what is left of a
single `Deadline` before each blocking call, so the whole check ends on time.
"""

from __future__ import annotations

import io
import ipaddress
import socket
import threading
import time
from collections.abc import Sequence
from typing import Any

AddrInfo = tuple[socket.AddressFamily, socket.SocketKind, int, str, tuple[Any, ...]]


class Deadline:
    """A moment after which every socket operation fails with TimeoutError.

    Sockets wait in real time, so this reads `time.monotonic` and never an injected clock.
    """

    def __init__(self, seconds: float) -> None:
        self._end = time.monotonic() + seconds

    def remaining(self) -> float:
        left = self._end - time.monotonic()
        if left <= 0:
            raise TimeoutError("deadline passed")
        return left

    def arm(self, sock: socket.socket) -> None:
        """Bound the next blocking call on `sock` by what is left of the deadline."""
        sock.settimeout(self.remaining())


def send_all(sock: socket.socket, data: bytes, deadline: Deadline) -> None:
    deadline.arm(sock)
    sock.sendall(data)  # one timeout for the whole call, not per chunk (Python >= 3.5)


def recv_exact(sock: socket.socket, size: int, deadline: Deadline) -> bytes:
    buf = bytearray()
    while len(buf) < size:
        deadline.arm(sock)  # re-armed per read so a trickling peer still meets the deadline
        chunk = sock.recv(size - len(buf))
        if not chunk:
            raise EOFError(f"peer closed the connection after {len(buf)} of {size} bytes")
        buf += chunk
    return bytes(buf)


def resolve(host: str, port: int, deadline: Deadline) -> Sequence[AddrInfo]:
    """getaddrinfo bounded by the deadline.

    getaddrinfo has no timeout of its own and the system resolver can block for tens of
    seconds, so a name goes to a daemon thread that is abandoned if it runs late.
    """
    try:
        ipaddress.ip_address(host)
    except ValueError:
        pass
    else:
        return socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_NUMERICHOST)
    found: list[AddrInfo] = []
    failed: list[OSError] = []

    def lookup() -> None:
        try:
            found.extend(socket.getaddrinfo(host, port, type=socket.SOCK_STREAM))
        except OSError as exc:
            failed.append(exc)

    worker = threading.Thread(target=lookup, name="proxy-check-dns", daemon=True)
    worker.start()
    worker.join(deadline.remaining())
    if worker.is_alive():
        raise socket.gaierror(f"resolving {host!r} did not finish in time")
    if failed:
        raise failed[0]
    return found


def resolve_ipv4(host: str, deadline: Deadline) -> str:
    for family, _kind, _protocol, _name, address in resolve(host, 0, deadline):
        if family == socket.AF_INET:
            return str(address[0])
    raise socket.gaierror(f"{host!r} has no IPv4 address")


def connect_any(
    addresses: Sequence[AddrInfo], connect_timeout: float, deadline: Deadline
) -> socket.socket:
    """Connect to the first address that answers; each attempt gets `connect_timeout` at most."""
    last_error: OSError = OSError("no address to connect to")
    for family, kind, protocol, _name, address in addresses:
        sock = socket.socket(family, kind, protocol)
        try:
            sock.settimeout(min(connect_timeout, deadline.remaining()))
            sock.connect(address)
        except OSError as exc:  # TimeoutError included: the next address may still answer
            sock.close()
            last_error = exc
            continue
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # small writes, no batching
        return sock
    raise last_error


class _DeadlineReader(io.RawIOBase):
    def __init__(self, sock: socket.socket, deadline: Deadline) -> None:
        self._sock, self._deadline = sock, deadline

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        self._deadline.arm(self._sock)
        return self._sock.recv_into(buffer)


class DeadlineSocket:
    """Stands in for a socket given to http.client.HTTPResponse, which only calls `makefile`;
    the file it gets bounds every read by the deadline."""

    def __init__(self, sock: socket.socket, deadline: Deadline) -> None:
        self._sock, self._deadline = sock, deadline

    def makefile(self, mode: str) -> io.BufferedReader:
        return io.BufferedReader(_DeadlineReader(self._sock, self._deadline))
