"""Every configuration or usage error of `jobctl` and of the platform's processes reads as one
line on stderr, names the setting or argument, and exits 2; a traceback only with --debug."""

from __future__ import annotations

import os
import sys
from pathlib import Path
import subprocess

import pytest
from cryptography.fernet import Fernet

BIN = Path(sys.executable).parent
JOBCTL = [str(BIN / "jobctl")]
SCHEDULER = [sys.executable, "-m", "scheduler"]
WORKER = [sys.executable, "-m", "celery", "-A", "worker.app:app", "worker", "--pool=solo"]
FLOWER = [sys.executable, "-m", "shared.cli.flower"]

# (settings, command, what the line must say)
CASES = [
    ({"JOBS_FLOWER_PROT": "1"}, [*JOBCTL, "doctor"], "did you mean JOBS_FLOWER_PORT?"),
    ({"JOBS_ENV": "production"}, [*JOBCTL, "jobs", "list"], "JOBS_FLOWER_BASIC_AUTH (user:password) is required"),
    ({"JOBS_DISPATCH_WINDOW": "-1"}, [*JOBCTL, "queues", "list"], "JOBS_DISPATCH_WINDOW"),
    ({"JOBS_DATABASE_URL": "mysql://db/x"}, [*JOBCTL, "stats"], "JOBS_DATABASE_URL"),
    ({"JOBS_HEARTBEAT_SECONDS": "20"}, [*JOBCTL, "doctor"], "JOBS_WORKER_STALE_AFTER_SECONDS"),
    ({}, [*JOBCTL, "jbos"], "Did you mean 'jobs'?"),
    ({}, [*JOBCTL, "jobs", "list", "--jsn"], "--json"),
    ({}, [*JOBCTL, "jobs", "show", "abc"], "'abc' is not a valid integer"),
    ({}, [*JOBCTL, "jobs", "list", "--state", "bogus"], "'bogus' is not one of"),
    ({}, [*JOBCTL, "jobs", "list", "--since", "yesterday"], "--since"),
    ({}, [*JOBCTL, "migrate"], "JOBS_DATABASE_URL is not set"),
    ({"JOBS_QUEUE_WINDOW": "5"}, SCHEDULER, "unknown setting JOBS_QUEUE_WINDOW"),
    ({"JOBS_BACKOFF_BASE_SECONDS": "10", "JOBS_BACKOFF_MAX_SECONDS": "1"}, SCHEDULER, "JOBS_BACKOFF_BASE_SECONDS"),
    ({"JOBS_FLOWER_PROT": "1", "JOBS_BROKER_URL": "redis://127.0.0.1:1/0"}, WORKER, "did you mean JOBS_FLOWER_PORT?"),
    ({"JOBS_ENV": "production", "JOBS_ENCRYPTION_KEY": Fernet.generate_key().decode()}, FLOWER, "JOBS_FLOWER_BASIC_AUTH"),
]


def _env(tmp_path: Path, settings: dict[str, str]) -> dict[str, str]:
    # Nothing of the test run's own settings: each case sees only what it sets.
    env = {k: v for k, v in os.environ.items() if not k.startswith("JOBS_")}
    return dict(env, JOBS_DATA_DIR=str(tmp_path / "data"), **settings)


@pytest.mark.parametrize(("settings", "argv", "says"), CASES, ids=[f"{' '.join(c[1][-2:])}-{i}" for i, c in enumerate(CASES)])
def test_one_line_and_exit_2(tmp_path: Path, settings: dict[str, str], argv: list[str], says: str) -> None:
    result = subprocess.run(argv, env=_env(tmp_path, settings), capture_output=True, text=True, timeout=60)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2, f"exit {result.returncode}\n{result.stderr}"
    assert len(lines) == 1, f"expected one line on stderr, got {len(lines)}:\n{result.stderr}"
    assert lines[0].startswith("error: ") and says in lines[0], lines[0]


def test_debug_adds_the_traceback(tmp_path: Path) -> None:
    result = subprocess.run(
        [*JOBCTL, "--debug", "doctor"], env=_env(tmp_path, {"JOBS_FLOWER_PROT": "1"}), capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    assert "Traceback (most recent call last)" in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("error: unknown setting JOBS_FLOWER_PROT")
