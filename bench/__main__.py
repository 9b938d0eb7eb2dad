"""`python -m bench [--quick] [--only drain,latency] [--jobs N] ...`: one run, one table,
`bench/results/latest.json`. Everything it creates (database, Redis keys, processes) is gone
when it ends, however it ends."""

from __future__ import annotations

import argparse
import os
import sys
import time

# Sizes: (full run, --quick). A flag given explicitly wins over both.
DEFAULTS = {
    "jobs": (5000, 1000),
    "reps": (3, 1),
    "bulk_size": (5000, 5000),
    "bulk_batches": (10, 3),
    "rate": (100.0, 100.0),
    "latency_seconds": (20.0, 5.0),
    "latency_reps": (3, 1),
    "cron_seconds": (120.0, 20.0),
    "history_rows": (1_000_000, 100_000),
}


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a smoke run of about a minute (small sizes, one repetition)")
    parser.add_argument("--only", help="comma-separated measurements to run (default: all)")
    parser.add_argument("--jobs", type=int, help="jobs per drain run (default 5000; quick 1000)")
    parser.add_argument("--reps", type=int, help="repetitions of each drain run (default 3; quick 1)")
    parser.add_argument("--bulk-size", type=int, help="jobs per enqueue_many call (default 5000)")
    parser.add_argument("--bulk-batches", type=int, help="enqueue_many calls (default 10; quick 3)")
    parser.add_argument("--rate", type=float, help="offered jobs per second in the latency test (default 100)")
    parser.add_argument("--latency-seconds", type=float, help="length of one latency run (default 20; quick 5)")
    parser.add_argument("--latency-reps", type=int, help="repetitions of each latency run (default 3; quick 1)")
    parser.add_argument("--cron-seconds", type=float, help="length of the cron lateness run under load (default 120; quick 20)")
    parser.add_argument("--quiet-wait", type=float, default=5.0,
                        help="before each run, wait up to this many seconds for the machine to be under 20%% busy (default 5)")
    parser.add_argument("--database-url", default=os.environ.get("BENCH_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"),
                        help="an admin URL of the PostgreSQL to use; the run creates and drops its own database (env BENCH_DATABASE_URL)")
    parser.add_argument("--redis-url", default=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/13"),
                        help="the Redis to use; the run writes only under its own key prefix (env BENCH_REDIS_URL)")
    parser.add_argument("--output", help="where to write the JSON (default bench/results/latest.json)")
    parser.add_argument("--history-rows", type=int, help="finished jobs (and executions) of the history run (default 1000000; quick 100000)")
    parser.add_argument("--keep-logs", action="store_true", help="keep the processes' log files (their folder is printed)")
    options = parser.parse_args(argv)
    for name, (full, quick) in DEFAULTS.items():
        if getattr(options, name) is None:
            setattr(options, name, quick if options.quick else full)
    options.only = [n.strip() for n in options.only.split(",") if n.strip()] if options.only else None
    return options


def main(argv: list[str] | None = None) -> int:
    options = parse(sys.argv[1:] if argv is None else argv)
    from pathlib import Path

    from bench import measurements, report
    from bench.context import Bench
    from bench.environment import Environment
    from bench.load import CpuMeter, load_average
    from bench.processes import Processes, ignore_signals, log_tails, raise_on_signals

    chosen = measurements.select(options.only)
    raise_on_signals()
    started = time.monotonic()
    environment = Environment(options.database_url, options.redis_url)
    processes = Processes(dict(os.environ), environment.log_dir)
    results = []
    failed = True
    try:
        print(f"bench: database {environment.database_name}, Redis {options.redis_url} prefix "
              f"{environment.key_prefix}, logs {environment.log_dir}", flush=True)
        environment.setup()
        processes.env = dict(os.environ, **environment.env)
        bench = Bench(options, environment, processes)
        info = report.machine(environment)
        info["load_average_at_start"] = load_average()
        info["background_busy_pct_at_start"] = _background_busy(CpuMeter)
        for measurement in chosen:
            print(f"{measurement.name}:", flush=True)
            results.append(measurement.measure(bench))
        failed = False
    except KeyboardInterrupt:
        print("\nbench: interrupted; cleaning up", file=sys.stderr, flush=True)
    except Exception:
        print(f"bench: failed; the processes' logs end with:\n{log_tails(environment.log_dir)}", file=sys.stderr, flush=True)
        raise
    finally:
        ignore_signals()
        processes.stop_all(grace=5.0)
        environment.teardown()
        if options.keep_logs:
            print(f"bench: process logs kept in {environment.log_dir}", file=sys.stderr)
        else:
            environment.remove_logs()
    if failed:
        return 1
    seconds = time.monotonic() - started
    info["load_average_at_end"] = load_average()
    figures = [f for r in results for f in r.figures]
    print()
    print(report.table(figures))
    doc = report.document(results, {k: v for k, v in vars(options).items() if k != "database_url"}, info, seconds)
    path = report.write(doc, Path(options.output) if options.output else None)
    print(f"\nwrote {path} ({seconds:.0f} s)")
    return 0


def _background_busy(meter_class) -> float:  # type: ignore[no-untyped-def]
    """The machine's CPU use before any contender runs: others' load distorts the figures."""
    meter = meter_class()
    time.sleep(1.0)
    busy = meter.busy_pct()
    if busy > 10:
        print(f"bench: warning: the machine is already {busy:.0f}% busy before the run (other processes); "
              "figures will be lower and noisier than on a quiet machine", file=sys.stderr, flush=True)
    return busy


if __name__ == "__main__":
    sys.exit(main())
