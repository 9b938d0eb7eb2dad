"""The running stack: its service URLs, and the lock that keeps one stack per data folder.

With nothing configured, `jobctl up` starts embedded servers on URLs nobody configured; it
writes them to `<data_dir>/runtime.json` while it runs, so `jobctl doctor`, the Python API or
any other command in another terminal finds the same stack. Configured URLs always win.

A data folder holds one stack at a time: `jobctl up` holds an exclusive `flock` on
`<data_dir>/stack.lock` for its whole life. The kernel drops the lock when the process dies,
`kill -9` included, so a stale lock never blocks a new stack; the processes a killed stack
left behind (its children run in sessions of their own) are listed in the lock file, and the
next holder ends them before it starts its own.
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
from pathlib import Path
from typing import IO
from urllib.parse import urlsplit, urlunsplit

from shared.errors import StackRunning
from shared.settings import Settings

RUNTIME_FILE = "runtime.json"
LOCK_FILE = "stack.lock"


def write_runtime(settings: Settings, database_url: str, broker_url: str, flower_url: str | None = None) -> Path:
    path = settings.data_dir / RUNTIME_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    found = {"database_url": database_url, "broker_url": broker_url, "pid": os.getpid()}
    if flower_url:
        found["flower_url"] = flower_url
    path.write_text(json.dumps(found))
    return path


def clear_runtime(settings: Settings) -> None:
    (settings.data_dir / RUNTIME_FILE).unlink(missing_ok=True)


def with_runtime_urls(settings: Settings) -> Settings:
    """Fill unset URLs from a live `jobctl up` of this project, if there is one."""
    if settings.database_url and settings.broker_url:
        return settings
    path = settings.data_dir / RUNTIME_FILE
    try:
        found = json.loads(path.read_text())
        os.kill(int(found["pid"]), 0)
    except (OSError, ValueError, KeyError):
        return settings
    return settings.model_copy(update={
        "database_url": settings.database_url or found["database_url"],
        "broker_url": settings.broker_url or found["broker_url"],
    })


def mask_url(url: str | None) -> str:
    """The URL with its password replaced by ***, for printing."""
    if not url:
        return "(not set)"
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


class StackLock:
    """The exclusive hold of one `jobctl up` on its data folder (see the module docstring)."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.path = data_dir / LOCK_FILE
        self._handle: IO[str] | None = None
        self._children: list[tuple[int, str]] = []  # (pid, start time): a reused pid is not ours

    def acquire(self) -> list[int]:
        """Take the folder, or raise StackRunning naming the stack that has it. Returns the
        pids of a killed stack's leftovers that were ended."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(self.path, "a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            raise StackRunning(describe_running(self.data_dir)) from None
        self._handle = handle
        ended = self._end_leftovers()
        self._write()
        return ended

    def add_child(self, pid: int) -> None:
        self._children.append((pid, _start_time(pid) or ""))
        self._write()

    def release(self) -> None:
        # The file stays: unlinking it would let a waiting `jobctl up` lock an orphaned inode.
        if self._handle is not None:
            self._children = []
            self._write()
            self._handle.close()
            self._handle = None

    def _write(self) -> None:
        assert self._handle is not None
        self._handle.seek(0)
        self._handle.truncate()
        self._handle.write(json.dumps({"pid": os.getpid(), "children": self._children}))
        self._handle.flush()

    def _end_leftovers(self) -> list[int]:
        assert self._handle is not None
        self._handle.seek(0)
        try:
            previous = json.loads(self._handle.read() or "{}")
        except ValueError:
            return []
        ended = []
        for pid, started in previous.get("children", []):
            if started and _start_time(pid) == started:
                try:
                    os.killpg(pid, signal.SIGKILL)  # each child leads a process group of its own
                    ended.append(pid)
                except (ProcessLookupError, PermissionError):
                    pass
        return ended


def describe_running(data_dir: Path) -> str:
    """One line naming the stack that holds a data folder: its pid and, once ready, its URLs."""
    try:
        holder = json.loads((data_dir / LOCK_FILE).read_text() or "{}").get("pid", "?")
    except (OSError, ValueError):
        holder = "?"
    try:
        found = json.loads((data_dir / RUNTIME_FILE).read_text())
    except (OSError, ValueError):
        found = {}
    if found.get("pid") != holder:
        return f"a stack is already running on {data_dir} (pid {holder}, still starting)"
    urls = [f"database={mask_url(found.get('database_url'))}", f"broker={mask_url(found.get('broker_url'))}"]
    if found.get("flower_url"):
        urls.append(f"flower={found['flower_url']}")
    return f"a stack is already running on {data_dir} (pid {holder}, {', '.join(urls)})"


def _start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (field 22 of /proc/PID/stat)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None
