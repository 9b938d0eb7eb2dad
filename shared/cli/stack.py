"""Child processes of `jobctl up`: started in their own process groups, stopped together.

Each child gets a session of its own, so a Ctrl-C in the terminal reaches only `jobctl up`.
It then sends SIGTERM to each child's main process only (a Celery worker's warm shutdown: its
pool processes finish their running jobs; signalling the whole group would kill them
mid-job), and SIGKILL to every group past the grace period: nothing is left behind.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from dataclasses import dataclass, field
from typing import Callable, Mapping, Sequence


@dataclass
class Child:
    name: str
    process: subprocess.Popen[bytes]

    def alive(self) -> bool:
        return self.process.poll() is None

    def signal_group(self, signum: int) -> None:
        try:
            os.killpg(self.process.pid, signum)
        except ProcessLookupError:
            pass


@dataclass
class Stack:
    env: Mapping[str, str]
    on_spawn: Callable[[int], None] | None = None  # told each child's pid (the stack lock lists them)
    children: list[Child] = field(default_factory=list)

    def spawn(self, name: str, argv: Sequence[str], env: Mapping[str, str] | None = None) -> Child:
        """`env`: this child's own additions to the stack's environment."""
        process = subprocess.Popen(list(argv), env=dict(self.env, **(env or {})), start_new_session=True)
        child = Child(name, process)
        self.children.append(child)
        if self.on_spawn is not None:
            self.on_spawn(process.pid)
        return child

    def first_dead(self) -> Child | None:
        return next((c for c in self.children if not c.alive()), None)

    def stop(self, grace_seconds: float) -> None:
        for child in self.children:
            if child.alive():
                child.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace_seconds
        for child in self.children:
            try:
                child.process.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
        for child in self.children:
            # The group, not just the leader: pool processes of a worker must go too.
            child.signal_group(signal.SIGKILL)
            if child.alive():
                child.process.wait()
