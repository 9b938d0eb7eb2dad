"""One stack per data folder: a second `jobctl up` on a folder in use is refused with one line
naming the running stack and changes nothing; after a kill -9 of the first, a new one starts
and ends what the killed one left behind."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.processes import wait_for

pytestmark = pytest.mark.acceptance
JOBCTL = str(Path(sys.executable).parent / "jobctl")


def _up(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with open(log, "wb") as out:
        return subprocess.Popen([JOBCTL, "up", "--no-flower", "--concurrency", "1"], env=env, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)


def _ready(process: subprocess.Popen[bytes], log: Path) -> bool:
    if process.poll() is not None:
        raise AssertionError(f"jobctl up exited with {process.returncode}:\n{log.read_text(errors='replace')}")
    return any(line.startswith("ready ") for line in log.read_text(errors="replace").splitlines())


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _listed_children(data_dir: Path) -> list[int]:
    """The processes the running `jobctl up` listed in its lock file (worker, IO worker, scheduler)."""
    return [child for child, _ in json.loads((data_dir / "stack.lock").read_text())["children"]]


def test_second_up_is_refused_and_a_killed_stack_is_taken_over(db, test_env, tmp_path):
    data_dir = tmp_path / "data"
    env = dict(os.environ, JOBS_DATA_DIR=str(data_dir), JOBS_WORKER_METRICS_PORT="0", JOBS_SCHEDULER_METRICS_PORT="0",
               JOBS_CONSOLE_PORT="0", JOBS_IO_WORKER_METRICS_PORT="0")
    first = _up(env, tmp_path / "first.log")
    leftovers: list[int] = []
    try:
        wait_for(lambda: _ready(first, tmp_path / "first.log"), 120, "the first stack is ready")
        leftovers = _listed_children(data_dir)
        assert len(leftovers) == 3

        second = subprocess.run([JOBCTL, "up", "--no-flower"], env=env, capture_output=True, text=True, timeout=60)
        lines = second.stderr.strip().splitlines()
        assert second.returncode == 2 and len(lines) == 1, second.stderr
        assert f"a stack is already running on {data_dir} (pid {first.pid}, database=" in lines[0]
        doctor = subprocess.run([JOBCTL, "doctor"], env=env, capture_output=True, text=True, timeout=60)
        assert doctor.returncode == 0, doctor.stdout + doctor.stderr
        assert all(_alive(pid) for pid in leftovers), "the refused stack touched nothing"

        os.kill(first.pid, signal.SIGKILL)  # the lock goes with the process; its children stay
        first.wait()
        assert all(_alive(pid) for pid in leftovers)
        third = _up(env, tmp_path / "third.log")
        try:
            wait_for(lambda: _ready(third, tmp_path / "third.log"), 120, "a new stack starts after a kill -9")
            assert not any(_alive(pid) for pid in leftovers), "the killed stack's worker and scheduler were ended"
            assert "ended 3 processes a killed stack left" in (tmp_path / "third.log").read_text()
            its_children = _listed_children(data_dir)
        finally:
            os.killpg(third.pid, signal.SIGINT)  # Ctrl-C: a clean stop of everything it started
        assert third.wait(60) == 0, (tmp_path / "third.log").read_text()
        assert not any(_alive(pid) for pid in its_children)
    finally:
        for pid in [first.pid, *leftovers]:
            try:
                os.killpg(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
