"""Drain throughput: N no-op jobs already waiting, then a worker is started; how fast is the
backlog worked off, and how much CPU does each job cost?

Every contender runs the same worker command (prefork, concurrency 2, prefetch 1, acks late,
one queue). The figure is N / (first task start .. last task done), both read from records
the work itself leaves, so neither worker start-up nor the poll interval counts:

- celery: bare Celery, N messages published before the worker starts; each task stamps the
  first start and the latest end in Redis (one pipelined round trip per task).
- platform: `platform.noop` jobs enqueued with `enqueue_many` (worker and scheduler not
  running), then worker and scheduler started; the dispatcher publishes in windows. Done is
  `succeeded` in PostgreSQL: min(jobs.started_at) .. max(jobs.finished_at) (database clock).
- celery_db: bare Celery with the SQLAlchemy result backend in the same PostgreSQL; done is a
  SUCCESS row in `celery_taskmeta`: first in-task start .. max(date_done).

CPU per job (see `bench.cpu`) is counted from the moment the contender's processes are up.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field

from sqlalchemy import text

from bench.context import Bench, Figure, Results
from bench.cpu import CpuAccount, postgres_backends
from bench.environment import QUEUE
from bench.load import CpuMeter, wait_for_quiet
from bench.processes import Proc, wait_for

POLL_SECONDS = 0.1  # completion polling; the figure comes from timestamps, not from the poll
STALL_SECONDS = 60.0  # a run with no progress for this long has failed
ENQUEUE_BATCH = 5000
NAMES = {"celery": "celery", "platform": "platform", "celery_db": "celery+db backend"}


@dataclass
class DrainRun:
    jobs: int
    seconds: float  # first start .. last done
    wall_seconds: float  # worker spawn .. all done seen by the poll (includes start-up)
    machine_busy_pct: float  # whole machine (all processes, ours and others'), spawn .. done
    cpu_ms_per_job: dict[str, float] = field(default_factory=dict)  # by process kind
    busy_before_pct: float = 0.0  # whole machine in the second before the run (others' load)

    @property
    def jobs_per_s(self) -> float:
        return self.jobs / self.seconds

    @property
    def cpu_ms_total(self) -> float:
        return sum(self.cpu_ms_per_job.values())


def measure(bench: Bench) -> Results:
    n, reps = bench.options.jobs, bench.options.reps
    contenders = {"celery": drain_celery, "platform": drain_platform, "celery_db": drain_celery_db}
    runs: dict[str, list[DrainRun]] = {name: [] for name in contenders}
    failures: list[dict[str, object]] = []
    for rep in range(reps):
        for name, run in contenders.items():  # interleaved, so drift hits every contender alike
            before = wait_for_quiet(bench.options.quiet_wait)
            try:
                result = run(bench, n)
            except TimeoutError as exc:  # recorded, then once more (a shared machine has bad moments)
                bench.say(f"drain {name} rep {rep + 1}/{reps} FAILED: {exc}; running it again")
                failures.append({"contender": name, "rep": rep + 1, "error": str(exc)})
                bench.environment.purge_queue()
                result = run(bench, n)
            result.busy_before_pct = before
            runs[name].append(result)
            cpu = ", ".join(f"{k} {v:.2f}" for k, v in result.cpu_ms_per_job.items())
            bench.say(f"drain {name} rep {rep + 1}/{reps}: {n} jobs in {result.seconds:.2f} s = "
                      f"{result.jobs_per_s:.0f} jobs/s; CPU ms/job {result.cpu_ms_total:.2f} ({cpu}); "
                      f"machine {result.machine_busy_pct:.0f}% busy, {before:.0f}% before")
    methods = {
        "celery": "bare Celery; first in-task start .. last in-task end (Redis stamps)",
        "platform": "min(started_at) .. max(finished_at) of the job rows",
        "celery_db": "first in-task start .. max(celery_taskmeta.date_done)",
    }
    figures = [
        Figure(f"{NAMES[k]} drain", "jobs/s", [r.jobs_per_s for r in runs[k]], baseline=None if k == "celery" else "celery drain",
               target=(">=", 0.9) if k == "platform" else None, method=methods[k])
        for k in contenders
    ] + [
        Figure(f"{NAMES[k]} CPU/job", "ms", [r.cpu_ms_total for r in runs[k]], baseline=None if k == "celery" else "celery CPU/job",
               method="CPU of worker (+scheduler) processes and their PostgreSQL backends / jobs")
        for k in contenders
    ]
    medians = {k: figures[i].median for i, k in enumerate(contenders)}
    summary = {
        "celery_jobs_per_s": medians["celery"],
        "platform_jobs_per_s": medians["platform"],
        "celery_db_backend_jobs_per_s": medians["celery_db"],
        "throughput_ratio_vs_celery": medians["platform"] / medians["celery"],
        "celery_db_backend_ratio_vs_celery": medians["celery_db"] / medians["celery"],
        "cpu_ms_per_job": {k: figures[3 + i].median for i, k in enumerate(contenders)},
    }
    raw = {name: [dict(asdict(r), jobs_per_s=r.jobs_per_s) for r in rs] for name, rs in runs.items()}
    return Results(figures, summary, {"drain": dict(raw, failures=failures)})


def _per_job(spent: dict[str, float], n: int) -> dict[str, float]:
    return {label: 1000 * seconds / n for label, seconds in sorted(spent.items())}


def _celery_probe(bench: Bench) -> tuple:  # type: ignore[type-arg]
    from bench import celery_app

    bench.environment.purge_queue()
    client = bench.environment.redis()
    client.delete(celery_app.FIRST, celery_app.LAST, celery_app.DONE)
    return celery_app, client


def _publish_celery(n: int) -> None:
    from bench import celery_app

    app = celery_app.app
    with app.producer_or_acquire() as producer:
        for _ in range(n):
            app.send_task(celery_app.NOOP_TASK, queue=QUEUE, routing_key=QUEUE, producer=producer)


def _wait(bench: Bench, done, proc: Proc, n: int, what: str) -> None:  # type: ignore[no-untyped-def]
    """Until `done()` reaches n; fails when it stops moving, saying what the broker holds."""
    last, moved_at = -1, time.monotonic()
    while (count := done()) < n:
        proc.check_alive()
        if count != last:
            last, moved_at = count, time.monotonic()
        elif time.monotonic() - moved_at > STALL_SECONDS:
            raise TimeoutError(f"{what}: stuck at {count} of {n} done for {STALL_SECONDS:.0f} s; "
                               f"broker lists/hashes: {bench.environment.broker_keys()}")
        time.sleep(POLL_SECONDS)


def drain_celery(bench: Bench, n: int) -> DrainRun:
    probe, client = _celery_probe(bench)
    _publish_celery(n)
    spawned, meter, account = time.monotonic(), CpuMeter(), CpuAccount()
    worker = bench.celery_worker()
    account.track_tree("worker", worker.pid)
    try:
        _wait(bench, lambda: int(client.get(probe.DONE) or 0), worker, n, "celery drain")
        wall, busy, spent = time.monotonic() - spawned, meter.busy_pct(), account.spent()
    finally:
        bench.stop(worker)
    first, last = float(client.get(probe.FIRST)), float(client.get(probe.LAST))
    client.close()
    return DrainRun(n, last - first, wall, busy, _per_job(spent, n))


def _empty_result_tables(database) -> None:  # type: ignore[no-untyped-def]
    """Celery's result tables, created as its backend would (it creates them on first use in
    each worker process too: present already, that is a catalog look-up) and emptied."""
    from celery.backends.database.models import ResultModelBase

    ResultModelBase.metadata.create_all(database.engine)
    with database.engine.begin() as connection:
        connection.execute(text("TRUNCATE celery_taskmeta, celery_tasksetmeta"))


def drain_celery_db(bench: Bench, n: int) -> DrainRun:
    probe, client = _celery_probe(bench)
    database = bench.environment.database()
    _empty_result_tables(database)
    url = database.engine.url.render_as_string(hide_password=False)
    _publish_celery(n)
    spawned, meter, account = time.monotonic(), CpuMeter(), CpuAccount()
    worker = bench.celery_worker(result_backend=f"db+{url}")
    account.track_tree("worker", worker.pid)
    account.track("postgres", postgres_backends(database))

    def stored() -> int:
        with database.engine.connect() as connection:
            return connection.execute(text("SELECT count(*) FROM celery_taskmeta WHERE status = 'SUCCESS'")).scalar()

    try:
        _wait(bench, stored, worker, n, "celery+db drain")
        wall, busy = time.monotonic() - spawned, meter.busy_pct()
        spent = account.spent(late={"postgres": postgres_backends(database)})
    finally:
        bench.stop(worker)
    with database.engine.connect() as connection:
        # date_done is naive UTC (written by the worker's clock); epoch of it as UTC.
        last = connection.execute(text(
            "SELECT extract(epoch FROM max(date_done) AT TIME ZONE 'UTC') FROM celery_taskmeta"
        )).scalar()
    first = float(client.get(probe.FIRST))
    client.close()
    return DrainRun(n, float(last) - first, wall, busy, _per_job(spent, n))


def drain_platform(bench: Bench, n: int, reset: bool = True) -> DrainRun:
    """The platform's drain; `reset=False` keeps the tables' other rows (a history of finished
    jobs, see bench.history) and removes only the previous drain's jobs."""
    from shared.enqueue import enqueue_many_now
    from shared.jobtypes.builtin import NOOP

    if reset:
        bench.environment.reset_tables()
    else:
        with bench.environment.database().engine.begin() as connection:
            connection.execute(text("DELETE FROM jobs WHERE type = 'platform.noop'"))
    bench.environment.purge_queue()
    database = bench.environment.database()
    with database.engine.connect() as connection:
        since = connection.execute(text("SELECT now()")).scalar()
    for start in range(0, n, ENQUEUE_BATCH):
        enqueue_many_now(NOOP, [{}] * min(ENQUEUE_BATCH, n - start))

    def succeeded() -> int:
        # Through ix_jobs_finished from the drain's start: flat however many finished jobs the
        # table holds (the history run has a million; a count over them ten times a second
        # would compete with the platform for the CPU and be measured as its slowness).
        with database.engine.connect() as connection:
            return connection.execute(text(
                "SELECT count(*) FROM jobs WHERE state = 'succeeded' AND queue = :queue AND finished_at >= :since "
                "AND type = 'platform.noop'"), {"queue": QUEUE, "since": since}).scalar()

    def connected(proc: Proc) -> bool:  # its imports done: count its CPU from here
        proc.check_alive()
        with database.engine.connect() as connection:
            return bool(connection.execute(text("SELECT count(*) FROM pg_stat_activity WHERE application_name = :name"),
                                           {"name": f"jobplatform:{proc.pid}"}).scalar())

    spawned, meter, account = time.monotonic(), CpuMeter(), CpuAccount()
    worker = bench.platform_worker()
    account.track_tree("worker", worker.pid)
    scheduler = bench.scheduler()
    try:
        wait_for(lambda: connected(scheduler), 60, "scheduler connected", interval=0.005)
        account.track("scheduler", [scheduler.pid])
        account.track("postgres", postgres_backends(database))
        _wait(bench, succeeded, worker, n, "platform drain")
        wall, busy = time.monotonic() - spawned, meter.busy_pct()
        spent = account.spent(late={"postgres": postgres_backends(database)})
        scheduler.check_alive()
    finally:
        bench.stop(scheduler, worker)
    with database.engine.connect() as connection:
        row = connection.execute(text(
            "SELECT count(*) FILTER (WHERE state <> 'succeeded') AS bad, "
            "extract(epoch FROM max(finished_at) - min(started_at)) AS span, "
            "(SELECT count(*) FROM job_executions e JOIN jobs j ON j.id = e.job_id AND j.type = 'platform.noop') "
            "AS executions FROM jobs WHERE type = 'platform.noop'"
        )).one()
    if row.bad or row.executions != n:
        raise RuntimeError(f"platform drain: {row.bad} jobs not succeeded, {row.executions} executions for {n} jobs")
    return DrainRun(n, float(row.span), wall, busy, _per_job(spent, n))
