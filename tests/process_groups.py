"""Subprocesses in process groups of their own: started with their output in a log file, waited
on, and stopped with everything they forked. The acceptance tests (tests/processes.py) and the
benchmarks (bench/processes.py) both start the platform's processes through this module, so a
fix to how a group is killed reaches both."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable


def wait_for(
    condition: Callable[[], object], timeout: float, message: str, interval: float = 0.05,
    on_timeout: Callable[[], object] | None = None, error: type[Exception] = AssertionError,
) -> object:
    """Poll until `condition` is truthy and return its value; on time-out raise `error` with the
    message (and what `on_timeout` returns: the state worth seeing when it did not happen). The
    condition is asked once more at the deadline, so a slow poll cannot miss the last chance."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            break
        time.sleep(interval)
    detail = f"\n{on_timeout()}" if on_timeout is not None else ""
    raise error(f"timed out after {timeout:.0f} s: {message}{detail}")


def children_of(pid: int) -> list[int]:
    """The processes whose parent is `pid` (from /proc: a prefork worker's pool)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry))
    return found


def kill_group(pid: int, signum: int = signal.SIGKILL) -> None:
    """Signal a whole process group (led by `pid`); a group already gone is fine."""
    try:
        os.killpg(pid, signum)
    except ProcessLookupError:
        pass


@dataclass
class Proc:
    name: str
    process: subprocess.Popen[bytes]
    log_path: Path
    pool: str = "prefork"

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def check_alive(self) -> None:
        if not self.alive():
            raise RuntimeError(f"{self.name} exited with {self.process.returncode}:\n{self.log_tail()}")

    def stop(self, timeout: float = 10.0, whole_group: bool = False) -> None:
        """SIGTERM (to the main process, or to the whole group), up to `timeout` for it to end,
        then SIGKILL to whatever is left of the group."""
        if self.alive() and timeout > 0:
            try:
                if whole_group:
                    os.killpg(self.pid, signal.SIGTERM)
                else:
                    self.process.send_signal(signal.SIGTERM)
                self.process.wait(timeout)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                pass
        kill_group(self.pid)
        if self.alive():
            self.process.wait()


def spawn(name: str, argv: list[str], env: dict[str, str], log_path: Path) -> Proc:
    """Start `argv` in a new session (its own process group), output to `log_path`, no stdin."""
    with open(log_path, "wb") as handle:
        process = subprocess.Popen(
            argv, env=env, stdout=handle, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
        )
    return Proc(name, process, log_path)
