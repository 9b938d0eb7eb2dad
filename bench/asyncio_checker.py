"""The baseline of `proxy_sweep_ratio_vs_asyncio`: a plain asyncio proxy checker in one process.

What a team would write without a job platform: every proxy checked with `asyncio` streams,
at most `concurrency` at once, each under one deadline (connect, handshake, request, answer),
results kept in memory. Plain HTTP proxies get an absolute-form GET; SOCKS5 ones the
username/password greeting, CONNECT, then the GET inside the tunnel.
"""

from __future__ import annotations

import asyncio
import ipaddress
import struct
from dataclasses import dataclass
from urllib.parse import urlsplit


@dataclass(frozen=True)
class Target:
    type: str
    host: str
    port: int
    username: str | None = None
    password: str | None = None


async def _check(proxy: Target, url: str) -> bool:
    parts = urlsplit(url)
    host, port = parts.hostname or "", parts.port or 80
    reader, writer = await asyncio.open_connection(proxy.host, proxy.port)
    try:
        if proxy.type == "socks5":
            writer.write(b"\x05\x01\x02" if proxy.username else b"\x05\x01\x00")
            method = await reader.readexactly(2)
            if method[1] == 2:
                user, password = (proxy.username or "").encode(), (proxy.password or "").encode()
                writer.write(bytes([1, len(user)]) + user + bytes([len(password)]) + password)
                if (await reader.readexactly(2))[1] != 0:
                    return False
            address = ipaddress.ip_address(host).packed
            writer.write(b"\x05\x01\x00\x01" + address + struct.pack(">H", port))
            reply = await reader.readexactly(10)
            if reply[1] != 0:
                return False
            target = parts.path or "/"
        else:
            target = url
        writer.write(f"GET {target} HTTP/1.1\r\nHost: {parts.netloc}\r\nConnection: close\r\n\r\n".encode())
        answer = await reader.read()
        return answer.startswith(b"HTTP/1.") and answer[9:10] == b"2"
    finally:
        writer.close()


async def sweep(proxies: list[Target], url: str, deadline: float, concurrency: int) -> list[bool]:
    gate = asyncio.Semaphore(concurrency)

    async def one(proxy: Target) -> bool:
        async with gate:
            try:
                return await asyncio.wait_for(_check(proxy, url), deadline)
            except (OSError, TimeoutError, asyncio.IncompleteReadError):
                return False

    return list(await asyncio.gather(*(one(p) for p in proxies)))
