"""`make run` with nothing configured: embedded PostgreSQL and Redis, a worker, the scheduler
and Flower come up; `ready` is printed; Ctrl-C stops everything within 15 s."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

from shared.embedded import free_port
from tests.processes import wait_for

pytestmark = pytest.mark.acceptance
ROOT = Path(__file__).resolve().parents[2]


def _processes_mentioning(marker: str) -> list[int]:
    """Every live process whose command line or environment names `marker`."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            blob = Path(f"/proc/{entry}/cmdline").read_bytes() + Path(f"/proc/{entry}/environ").read_bytes()
            state = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if marker.encode() in blob and state != "Z":
            found.append(int(entry))
    return found


def test_make_run_smoke_embedded():
    data_dir = Path(tempfile.mkdtemp(prefix="jobs-run-smoke-"))
    data_dir.chmod(0o755)  # the embedded PostgreSQL runs as an unprivileged user
    env = {k: v for k, v in os.environ.items() if not k.startswith("JOBS_")}
    env.update(JOBS_DATA_DIR=str(data_dir), JOBS_FLOWER_PORT=str(free_port()), JOBS_CONSOLE_PORT=str(free_port()),
               JOBS_WORKER_METRICS_PORT=str(free_port()), JOBS_SCHEDULER_METRICS_PORT=str(free_port()),
               JOBS_IO_WORKER_METRICS_PORT=str(free_port()))
    log = data_dir / "run.log"
    with open(log, "wb") as out:
        make = subprocess.Popen(["make", "run"], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    try:
        ready = wait_for(lambda: _ready_line(log, make), 150, f"make run prints ready\n{log.read_text(errors='replace')}")
        runtime = json.loads((data_dir / "runtime.json").read_text())
        service_env = dict(env, JOBS_DATABASE_URL=runtime["database_url"], JOBS_BROKER_URL=runtime["broker_url"])
        assert f"flower=http://127.0.0.1:{env['JOBS_FLOWER_PORT']}" in ready
        assert f"console=http://127.0.0.1:{env['JOBS_CONSOLE_PORT']}" in ready
        with urllib.request.urlopen(f"http://127.0.0.1:{env['JOBS_CONSOLE_PORT']}/login", timeout=5) as page:
            assert page.status == 200

        ping = subprocess.run([sys.executable, "-m", "celery", "-A", "worker.app:app", "inspect", "ping", "--timeout=5"],
                              cwd=ROOT, env=service_env, capture_output=True, text=True, timeout=60)
        assert ping.returncode == 0 and "pong" in ping.stdout, ping.stdout + ping.stderr

        with urllib.request.urlopen(f"http://127.0.0.1:{env['JOBS_FLOWER_PORT']}/healthcheck", timeout=5) as page:
            assert page.status == 200
        # An idle stack runs no job (the sweeps find nothing to do): run one, the way a service
        # next to `make run` would, finding the embedded database by itself.
        enqueued = subprocess.run([sys.executable, "-c", "from shared.enqueue import enqueue_now; enqueue_now('platform.noop')"],
                                  cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
        assert enqueued.returncode == 0, enqueued.stderr
        for name, metric in (("WORKER", "jobs_succeeded_total"), ("SCHEDULER", "jobs_scheduler_leader")):
            url = f"http://127.0.0.1:{env[f'JOBS_{name}_METRICS_PORT']}/metrics"
            assert url in ready
            wait_for(lambda: metric in _get(url), 30, f"{metric} in {url}")

        doctor = subprocess.run([str(ROOT / ".venv/bin/jobctl"), "doctor"], cwd=ROOT, env=env,
                                capture_output=True, text=True, timeout=60)
        assert doctor.returncode == 0, doctor.stdout + doctor.stderr
        assert doctor.stdout.count("ok") >= 4

        started = _processes_mentioning(str(data_dir))
        assert len(started) >= 5, "make, jobctl, worker and its pool, scheduler, flower, postgres, redis"
        os.killpg(make.pid, signal.SIGINT)  # what Ctrl-C in the terminal does
        began = time.monotonic()
        wait_for(lambda: not _processes_mentioning(str(data_dir)), 15, "every process gone within 15 s")
        assert time.monotonic() - began <= 15
    finally:
        for pid in _processes_mentioning(str(data_dir)):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as page:
        return str(page.read().decode())


def _ready_line(log: Path, make: subprocess.Popen[bytes]) -> str | None:
    if make.poll() is not None:
        raise AssertionError(f"make run exited with {make.returncode}:\n{log.read_text(errors='replace')}")
    for line in log.read_text(errors="replace").splitlines():
        if line.startswith("ready "):
            return line
    return None
