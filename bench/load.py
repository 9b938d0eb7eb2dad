"""How busy the whole machine was during a run (the services and the machine may be shared:
other processes' CPU use distorts a benchmark, so every run records it)."""

from __future__ import annotations

import os
from pathlib import Path


def _cpu_times() -> tuple[int, int]:
    """(busy, total) jiffies of all CPUs since boot."""
    fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    total = sum(fields[:8])  # guest time is already in user
    return total - idle, total


class CpuMeter:
    """Busy share of the machine between start() and busy_pct(), in % of all CPUs."""

    def __init__(self) -> None:
        self._start = _cpu_times()

    def busy_pct(self) -> float:
        busy, total = _cpu_times()
        elapsed = total - self._start[1]
        return 100.0 * (busy - self._start[0]) / elapsed if elapsed else 0.0


def load_average() -> list[float]:
    return list(os.getloadavg())


def wait_for_quiet(max_wait: float, threshold_pct: float = 20.0, window: float = 1.0) -> float:
    """Before a run: wait (at most `max_wait` s) until the machine is under `threshold_pct`
    busy over a `window`; returns the last busy share seen (recorded with the run)."""
    import time

    deadline = time.monotonic() + max_wait
    while True:
        meter = CpuMeter()
        time.sleep(window)
        busy = meter.busy_pct()
        if busy < threshold_pct or time.monotonic() >= deadline:
            return busy
