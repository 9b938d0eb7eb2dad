"""Chromium for the browser tests: Debian's package (installed here when missing), driven by
Playwright, and the console served by uvicorn in a thread on a socket bound to port 0."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path

import uvicorn

from console.app import create_app
from shared.db import Database
from tests.console.console_fixture import console_settings

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts" / "console"


def ensure_chromium() -> str:
    if not os.path.exists(CHROMIUM):
        apt = shutil.which("apt-get")
        if apt is None:
            raise RuntimeError(f"{CHROMIUM} is missing and apt-get is not available to install it")
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        for argv in ([apt, "update"], [apt, "install", "-y", "chromium"]):
            done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=900)
            if done.returncode != 0:
                raise RuntimeError(f"{' '.join(argv)} failed ({done.returncode}):\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    if not os.path.exists(CHROMIUM):
        raise RuntimeError(f"chromium was installed but {CHROMIUM} does not exist")
    return CHROMIUM


@dataclass
class ConsoleServer:
    url: str
    server: uvicorn.Server
    thread: threading.Thread

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)


def serve(database: Database) -> ConsoleServer:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(create_app(console_settings(), database), log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    port = sock.getsockname()[1]
    deadline = 30.0
    import time

    start = time.monotonic()
    while not server.started:
        if time.monotonic() - start > deadline:
            raise RuntimeError("the console did not start")
        time.sleep(0.05)
    return ConsoleServer(f"http://127.0.0.1:{port}", server, thread)
