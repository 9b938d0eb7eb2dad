"""`jobctl jobs | queues | stats` against a live stack (a real worker and scheduler), through the
`jobctl` command group; every `--json` output is parsed back, every refusal gives a message and
a non-zero exit code. `jobctl flower`'s refusal to run unprotected is checked on a real process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from typing import Any

import click
import pytest
from click.testing import CliRunner, Result
from sqlalchemy import text

from shared.cli.jobs import jobs
from shared.cli.commands import cli
from shared.cli.queues import queues
from shared.cli.stats import stats
from shared.enqueue import enqueue_many_now, enqueue_now
from shared.settings import Settings
from shared.store.queues import seed_queues
from tests.processes import wait_for

pytestmark = pytest.mark.acceptance  # starts real worker and scheduler processes

NO_METRICS = {"JOBS_WORKER_METRICS_PORT": "0", "JOBS_SCHEDULER_METRICS_PORT": "0"}
# The tests' jobs go to a queue of their own: jobs of the code-declared schedules (posts, messages,
# proxies) fire into the default queues while the stack runs.
Q, HELD = "opstest", "opsheld"


@pytest.fixture
def jobctl() -> click.Group:
    """The `jobctl` group with the operator commands, as shared/cli/commands.py adds them."""
    for command in (jobs, queues, stats):
        cli.add_command(command)
    return cli


@pytest.fixture
def stack(db, processes):
    with db.session() as session:
        seed_queues(session, [Q, HELD])
    processes.worker(queues=f"high,default,low,bulk,{Q},{HELD}", env=NO_METRICS)
    processes.scheduler(env=NO_METRICS)
    return db


def run(group: click.Group, *args: str, exit_code: int = 0) -> Result:
    result = CliRunner().invoke(group, list(args))
    assert result.exit_code == exit_code, f"jobctl {' '.join(args)} -> {result.exit_code}\n{result.output}"
    return result


def run_json(group: click.Group, *args: str) -> Any:
    return json.loads(run(group, *args, "--json").stdout)


def state_of(db, job_id: int) -> str:
    with db.session() as s:
        return s.execute(text("SELECT state FROM jobs WHERE id = :j"), {"j": job_id}).scalar_one()


def ids(rows: list[dict[str, Any]]) -> list[int]:
    return [row["id"] for row in rows]


def test_jobs_list_show_retry_cancel(stack, jobctl):
    db = stack
    noops = enqueue_many_now("platform.noop", [{}] * 3, queue=Q)
    failing = enqueue_now("test.fail", {"key": "f"}, queue=Q).id
    later = enqueue_now("test.record", {"key": "later"}, queue="low", delay=3600).id
    wait_for(lambda: [state_of(db, i) for i in (*noops, failing)] == ["succeeded"] * 3 + ["failed"], 30, "jobs end")

    everything = ids(run_json(jobctl, "jobs", "list", "--limit", "1000"))
    mine = sorted([*noops, failing, later], reverse=True)
    assert [i for i in everything if i in mine] == mine, "newest first"
    assert ids(run_json(jobctl, "jobs", "list", "--queue", Q, "--state", "failed")) == [failing]
    assert sorted(ids(run_json(jobctl, "jobs", "list", "--type", "platform.noop", "-q", Q))) == sorted(noops)
    assert ids(run_json(jobctl, "jobs", "list", "--queue", "low", "--type", "test.record")) == [later]
    assert len(run_json(jobctl, "jobs", "list", "-s", "succeeded", "-s", "failed", "-q", Q)) == 4
    assert len(run_json(jobctl, "jobs", "list", "--since", "1h", "-q", Q, "-q", "low", "-t", "platform.noop",
                        "-t", "test.fail", "-t", "test.record")) == 5
    an_hour_ago = (datetime.now(timezone.utc) - timedelta(hours=1)).isoformat()
    assert run_json(jobctl, "jobs", "list", "--until", an_hour_ago) == []
    assert ids(run_json(jobctl, "jobs", "list", "-q", Q, "--limit", "2")) == sorted([failing, noops[-1]], reverse=True)
    table = run(jobctl, "jobs", "list", "--type", "test.fail").stdout
    assert table.splitlines()[0].split()[:4] == ["ID", "TYPE", "QUEUE", "STATE"] and "boom" in table

    shown = run_json(jobctl, "jobs", "show", str(failing))
    assert shown["job"]["id"] == failing and shown["job"]["last_error"] == "boom"
    assert [(e["attempt"], e["state"]) for e in shown["executions"]] == [(1, "failed"), (2, "failed"), (3, "failed")]
    assert any("boom" in line["message"] for line in shown["logs"])
    page = run(jobctl, "jobs", "show", str(failing), "--tracebacks").stdout
    assert "executions (3)" in page and "ValueError: boom" in page

    assert "retried" in run(jobctl, "jobs", "retry", str(failing)).stdout
    wait_for(lambda: len(run_json(jobctl, "jobs", "show", str(failing))["executions"]) == 4, 30, "a fourth attempt ran")
    refused = run(jobctl, "jobs", "retry", str(noops[0]), exit_code=1)
    assert f"job {noops[0]} is succeeded; only a failed or cancelled job can be retried" in refused.stderr

    run(jobctl, "jobs", "cancel", str(later), "--reason", "not needed")
    assert run_json(jobctl, "jobs", "show", str(later))["job"]["cancel_reason"] == "not needed"
    assert state_of(db, later) == "cancelled"
    assert "can be cancelled" in run(jobctl, "jobs", "cancel", str(noops[0]), exit_code=1).stderr
    run(jobctl, "jobs", "retry", str(later))  # a cancelled job may be queued again
    wait_for(lambda: state_of(db, later) == "succeeded", 30, "the retried job runs")


def test_jobs_commands_refuse_unknown_jobs_queues_and_bad_filters(db, jobctl):
    assert "no job with id 987654" in run(jobctl, "jobs", "show", "987654", exit_code=1).stderr
    assert "no job with id 987654" in run(jobctl, "jobs", "retry", "987654", exit_code=1).stderr
    assert "no job with id 987654" in run(jobctl, "jobs", "cancel", "987654", exit_code=1).stderr
    unknown = run(jobctl, "jobs", "list", "--queue", "nope", exit_code=2).stderr
    assert "unknown queue 'nope' (known: bulk, default, high, low)" in unknown
    assert "'bogus' is not one of" in run(jobctl, "jobs", "list", "--state", "bogus", exit_code=2).stderr
    assert "neither an ISO 8601 time" in run(jobctl, "jobs", "list", "--since", "yesterday", exit_code=2).stderr
    assert "--since must be before --until" in run(jobctl, "jobs", "list", "--since", "1h", "--until", "2h", exit_code=2).stderr
    assert run(jobctl, "jobs", "list").stdout.strip() == "no jobs match"


def test_queues_pause_resume_list_and_stats(stack, jobctl):
    db = stack
    assert [(q["name"], q["paused"]) for q in run_json(jobctl, "queues", "list")] == [
        ("bulk", False), ("default", False), ("high", False), ("low", False), (HELD, False), (Q, False)]
    assert run(jobctl, "queues", "pause", HELD).stdout.strip() == f"queue {HELD} paused"
    held = enqueue_many_now("test.record", [{"key": "a"}, {"key": "b"}], queue=HELD)
    failing = enqueue_now("test.fail", {"key": "f"}, queue=Q).id
    noops = enqueue_many_now("platform.noop", [{}] * 2, queue=Q)
    wait_for(lambda: [state_of(db, i) for i in (failing, *noops)] == ["failed", "succeeded", "succeeded"], 30,
             f"the {Q} queue's jobs end")
    assert [state_of(db, i) for i in held] == ["queued", "queued"]

    paused = next(q for q in run_json(jobctl, "queues", "list") if q["name"] == HELD)
    assert paused["paused"] is True and paused["queued"] == 2 and paused["oldest_waiting_seconds"] > 0
    report = run_json(jobctl, "stats", "--minutes", "5")
    by_name = {q["name"]: q for q in report["queues"]}
    assert by_name[HELD]["depth"]["queued"] == 2 and by_name[HELD]["oldest_waiting_seconds"] > 0
    assert by_name[Q]["finished"] == {"succeeded": 2, "failed": 1, "cancelled": 0}
    assert by_name[Q]["throughput_per_minute"] == pytest.approx(3 / 5)
    assert report["totals"]["depth"]["queued"] >= 2 and report["totals"]["finished"]["failed"] >= 1
    [failure] = [f for f in report["failures"] if f["queue"] == Q]
    assert (failure["type"], failure["failed"], failure["last_error"]) == ("test.fail", 1, "boom")
    assert report["workers_alive"] == 2 and report["window_minutes"] == 5
    page = run(jobctl, "stats").stdout
    assert f"{HELD} (paused)" in page and "test.fail" in page and "worker processes alive: 2" in page
    assert "paused" in run(jobctl, "queues", "list").stdout.splitlines()[0].lower()

    assert run(jobctl, "queues", "resume", HELD).stdout.strip() == f"queue {HELD} resumed"
    wait_for(lambda: [state_of(db, i) for i in held] == ["succeeded", "succeeded"], 30, "resumed jobs run")
    for action in ("pause", "resume"):
        assert "unknown queue 'nope'" in run(jobctl, "queues", action, "nope", exit_code=2).stderr


def test_flower_refuses_to_start_unprotected_in_production(test_env):
    env = {k: v for k, v in os.environ.items() if k != "JOBS_FLOWER_BASIC_AUTH"}
    env.update(test_env, JOBS_ENV="production")
    if "encryption_key" in Settings.model_fields:  # production's other requirement, when present
        from cryptography.fernet import Fernet

        env["JOBS_ENCRYPTION_KEY"] = Fernet.generate_key().decode()
    result = subprocess.run([sys.executable, "-m", "shared.cli.flower"], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "JOBS_FLOWER_BASIC_AUTH (user:password) is required when JOBS_ENV is production" in result.stderr
