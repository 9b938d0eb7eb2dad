"""Hundreds or thousands of real proxies on 127.0.0.1, for sweep tests and benchmarks.

    with ProxyFleet(http=105, socks5=105, refusing=60, stalling=30, log_dir=tmp) as fleet:
        fleet.proxies      # [FleetProxy(kind, type, host, port, username, password)]
        fleet.check_url    # what healthy proxies reach

Healthy proxies are pproxy listeners (many `-l` per process): plain HTTP, and SOCKS5 wanting
user "checker" with its password (`--auth 0`, see tests/rigs/proxies.py). Refusing ones are
ports bound and never listening (held by this process). Stalling ones, and the check endpoint,
live in a helper process (`python -m tests.rigs.proxy_fleet N`, asyncio): a stalling port
accepts and never answers; the endpoint answers `{"ip": "<client>"}`. Kept out of the caller's
process so an in-process checker compared against the platform does not share its interpreter
with the servers.
"""

from __future__ import annotations

import asyncio
import json
import random
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

HOST = "127.0.0.1"
USER, PASSWORD = "checker", "S3cret-pw"
LISTENERS_PER_PPROXY = 200


@dataclass(frozen=True)
class FleetProxy:
    kind: str  # healthy, refusing, stalling
    type: str  # http, socks5
    host: str
    port: int
    username: str | None = None
    password: str | None = None


def _free_ports(count: int) -> list[int]:
    """Ports free now, below the kernel's ephemeral range (where outgoing connections take
    theirs), so few are taken before pproxy binds them; a taken one is dropped at start."""
    chosen: list[int] = []
    for port in random.sample(range(20000, 32000), 12000):
        if len(chosen) == count:
            break
        with socket.socket() as sock:
            try:
                sock.bind((HOST, port))
            except OSError:
                continue
        chosen.append(port)
    return chosen


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=0.5):
            return True
    except OSError:
        return False


class ProxyFleet:
    def __init__(self, *, http: int, socks5: int, refusing: int, stalling: int, log_dir: Path) -> None:
        self.counts = {"http": http, "socks5": socks5, "refusing": refusing, "stalling": stalling}
        self.log_dir = log_dir
        self.processes: list[subprocess.Popen[bytes]] = []
        self.closed: list[socket.socket] = []
        self.proxies: list[FleetProxy] = []
        self.check_url = ""

    def __enter__(self) -> ProxyFleet:
        try:
            self._start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def _start(self) -> None:
        helper = self._spawn("fleet-helper", [sys.executable, "-m", "tests.rigs.proxy_fleet", str(self.counts["stalling"])],
                             stdout=subprocess.PIPE)
        assert helper.stdout is not None
        ready = json.loads(helper.stdout.readline() or b"{}")
        if "check_url" not in ready:
            raise RuntimeError("the fleet helper did not start")
        self.check_url = ready["check_url"]
        listeners: list[tuple[str, int]] = []
        for scheme in ("http", "socks5"):
            ports = _free_ports(self.counts[scheme])
            auth = f"#{USER}:{PASSWORD}" if scheme == "socks5" else ""
            for start in range(0, len(ports), LISTENERS_PER_PPROXY):
                argv = [sys.executable, "-m", "pproxy", "--auth", "0"]
                for port in ports[start:start + LISTENERS_PER_PPROXY]:
                    argv += ["-l", f"{scheme}://{HOST}:{port}{auth}"]
                self._spawn(f"pproxy-{scheme}", argv)
            for port in ports:
                listeners.append((scheme, port))
                self.proxies.append(FleetProxy("healthy", scheme, HOST, port, *((USER, PASSWORD) if scheme == "socks5" else (None, None))))
        for _ in range(self.counts["refusing"]):
            sock = socket.socket()
            sock.bind((HOST, 0))  # bound, never listening: connections are refused
            self.closed.append(sock)
            self.proxies.append(FleetProxy("refusing", "http", HOST, int(sock.getsockname()[1])))
        for port in ready["stalling"]:
            self.proxies.append(FleetProxy("stalling", "socks5", HOST, port, USER, PASSWORD))
        give_up = time.monotonic() + 30
        waiting = [port for _, port in listeners]
        while waiting and time.monotonic() < give_up:
            for proc in self.processes:
                if proc.poll() is not None:
                    raise RuntimeError(f"a fleet process exited with {proc.returncode}; logs in {self.log_dir}")
            waiting = [port for port in waiting if not _accepts(port)]
            if waiting:
                time.sleep(0.2)
        # A port someone else took between choosing and binding: that proxy is left out.
        self.proxies = [p for p in self.proxies if p.kind != "healthy" or p.port not in waiting]
        if len(waiting) > len(listeners) // 100:
            raise RuntimeError(f"{len(waiting)} pproxy listeners never accepted; logs in {self.log_dir}")

    def _spawn(self, name: str, argv: list[str], stdout: int | None = None) -> subprocess.Popen[bytes]:
        log = (self.log_dir / f"{name}-{len(self.processes)}.log").open("ab")
        process = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=stdout or log, stderr=log)
        log.close()
        self.processes.append(process)
        return process

    def close(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.terminate()
        for process in self.processes:
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        for sock in self.closed:
            sock.close()


async def _helper(stalling: int) -> None:
    held: list[asyncio.StreamWriter] = []

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)  # never answered; closed when the helper ends

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readuntil(b"\r\n\r\n")
            body = json.dumps({"ip": writer.get_extra_info("peername")[0]}).encode()
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
                         + str(len(body)).encode() + b"\r\nConnection: close\r\n\r\n" + body)
            await writer.drain()
            # Half-close and drain what the client still sends: closing with unread bytes would
            # reset the connection, and the answer with it.
            writer.write_eof()
            await asyncio.wait_for(reader.read(), 10)
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError):
            pass
        finally:
            writer.close()

    endpoint = await asyncio.start_server(answer, HOST, 0, backlog=1024)
    stallers = [await asyncio.start_server(hold, HOST, 0, backlog=256) for _ in range(stalling)]
    port = endpoint.sockets[0].getsockname()[1]
    print(json.dumps({"check_url": f"http://{HOST}:{port}/",
                      "stalling": [s.sockets[0].getsockname()[1] for s in stallers]}), flush=True)
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.buffer.read)  # until the parent closes our stdin (or dies)


if __name__ == "__main__":
    asyncio.run(_helper(int(sys.argv[1])))
