"""The measurements of a run, in order. A new one is a module with
`measure(bench: Bench) -> Results` plus one line here; its `Results.summary` keys land at the
top level of `latest.json` (e.g. `cron_lateness` returns `cron_lateness_p99_ms`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from bench import broker_loss, connections, console_page, cron_lateness, drain, enqueue_rate, history, latency, proxy_sweep, telegram_rate
from bench.context import Bench, Results


@dataclass(frozen=True)
class Measurement:
    name: str
    measure: Callable[[Bench], Results]


MEASUREMENTS: list[Measurement] = [
    Measurement("drain", drain.measure),
    Measurement("bulk_enqueue", enqueue_rate.measure),
    Measurement("latency", latency.measure),
    Measurement("cron_lateness", cron_lateness.measure),
    Measurement("console_page", console_page.measure),
    Measurement("proxy_sweep_ratio_vs_asyncio", proxy_sweep.measure),
    Measurement("telegram_send_rate", telegram_rate.measure),
    Measurement("worker_connections", connections.measure),
    Measurement("broker_loss", broker_loss.measure),
    Measurement("history", history.measure),
]


def select(names: list[str] | None) -> list[Measurement]:
    if not names:
        return list(MEASUREMENTS)
    known = {m.name: m for m in MEASUREMENTS}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise SystemExit(f"unknown measurement(s) {', '.join(unknown)}; known: {', '.join(known)}")
    return [known[n] for n in names]
