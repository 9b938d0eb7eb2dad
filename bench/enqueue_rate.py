"""Bulk enqueue rate: `enqueue_many` of small payloads into PostgreSQL, no worker running.

Each batch is one call of `enqueue_many_now` (validation of every payload, one INSERT of the
whole batch, commit); its rate is batch size / wall time of the call. The figure is the median
batch rate; the total (all jobs / all time) is kept in the raw data.
"""

from __future__ import annotations

import time

from shared.jobtypes.registry import Payload, declare

from bench.context import Bench, Figure, Results


class Item(Payload):
    """A small payload, like a service's "do X for record N": about 30 bytes of JSON."""

    n: int
    note: str


ITEM = declare("bench.item", Item, description="Benchmark payload; never run.")


def measure(bench: Bench) -> Results:
    from shared.enqueue import enqueue_many_now

    size, batches = bench.options.bulk_size, bench.options.bulk_batches
    bench.environment.reset_tables()
    enqueue_many_now(ITEM, [{"n": 0, "note": "warm-up"}] * 10)  # connection, queue cache, statement cache
    seconds: list[float] = []
    for batch in range(batches):
        payloads = [{"n": batch * size + i, "note": "hello"} for i in range(size)]
        started = time.perf_counter()
        ids = enqueue_many_now(ITEM, payloads)
        seconds.append(time.perf_counter() - started)
        assert len(ids) == size
    rates = [size / s for s in seconds]
    total = size * batches / sum(seconds)
    bench.say(f"bulk enqueue: {batches} x {size} jobs, median {sorted(rates)[len(rates) // 2]:.0f} jobs/s, "
              f"overall {total:.0f} jobs/s")
    bench.environment.reset_tables()
    figure = Figure("platform bulk enqueue", "jobs/s", rates, target=(">=", 50_000.0),
                    method=f"enqueue_many_now of {size} small payloads per call, median of {batches} calls")
    return Results(
        [figure],
        {"bulk_enqueue_jobs_per_s": figure.median},
        {"bulk_enqueue": {"batch_size": size, "batch_seconds": seconds, "overall_jobs_per_s": total}},
    )
