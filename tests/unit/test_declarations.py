"""Job-type declarations read no settings when imported; the registry resolves their
settings-derived defaults once, with the settings object it is given."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from shared.errors import ConfigurationError, ScheduleInvalid, ValidationError
from shared.jobtypes import messages, posts, proxies
from shared.jobtypes import recurring as recurring_module
from shared.jobtypes.recurring import recurring
from shared.jobtypes.registry import EmptyPayload, FunctionAt, JobType, Payload, Registry, function_at
from shared.schedules import declared_schedules
from shared.settings import Settings, load_settings

ROOT = Path(__file__).resolve().parents[2]
PLATFORM_TYPES = (messages.SEND, messages.SEND_DUE, posts.PUBLISH, posts.START_DUE,
                  proxies.CHECK, proxies.CHECK_BATCH, proxies.CHECK_ALL)


class Keyed(Payload):
    account: int


def settings(**values: object) -> Settings:
    return load_settings({}, **values)


def resolved(with_settings: Settings) -> Registry:
    registry = Registry(settings=with_settings)
    for job_type in PLATFORM_TYPES:
        registry.declare(job_type)
    return registry


def test_importing_the_declarations_reads_no_settings_and_loads_no_database():
    # A setting that fails validation: any read of the settings at import would raise.
    env = {k: v for k, v in os.environ.items() if not k.startswith("JOBS_")}
    env.update(JOBS_PLATFORM_TIMEOUT_SECONDS="-1", PYTHONPATH=str(ROOT))
    code = (
        "import sys\n"
        "import shared.jobtypes.builtin, shared.jobtypes.proxies, shared.jobtypes.posts, shared.jobtypes.messages\n"
        "loaded = [m for m in ('shared.settings', 'shared.db', 'shared.store', 'shared.enqueue', 'shared.schedules',"
        " 'shared.workloads') if m in sys.modules]\n"
        "print(','.join(loaded))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == ""


def test_platform_defaults_follow_the_settings_object_given():
    registry = resolved(settings(
        platform_timeout_seconds=2.5, proxy_connect_timeout_seconds=1, proxy_total_timeout_seconds=4,
        proxy_check_batch_size=7, proxy_check_concurrency=3, telegram_global_rate=5, post_account_concurrency=4,
    ))
    assert registry.get("messages.send").timeout_seconds == 2.5 + 30
    assert registry.get("posts.publish").timeout_seconds == 2.5 * 4 + 30
    assert registry.get("proxies.check").timeout_seconds == 4 + 30
    assert registry.get("proxies.check_batch").timeout_seconds == 3 * 4 + 60  # ceil(7 / 3) rounds of the deadline
    assert {name: limit.concurrency for name, limit in registry.key_limits().items()} == {
        "telegram.bot": 2 * 5, "posts.account": 4,
    }
    # The sweeps' own limits are numbers, the same whatever the settings.
    assert [registry.get(t.name).timeout_seconds for t in (messages.SEND_DUE, posts.START_DUE, proxies.CHECK_ALL)] == [300] * 3


def test_the_defaults_are_those_of_the_default_settings():
    registry = resolved(settings())
    assert {t.name: t.timeout_seconds for t in registry.all()} == {
        "messages.send": 45.0, "messages.send_due": 300, "posts.publish": 90.0, "posts.start_due": 300,
        "proxies.check": 45.0, "proxies.check_all": 300, "proxies.check_batch": 135.0,
    }


def test_a_registry_without_settings_refuses_what_needs_them_and_resolves_once_configured():
    registry = Registry()
    plain = registry.declare(JobType("unit.plain", EmptyPayload, timeout_seconds=5))
    derived = registry.declare(JobType("unit.derived", EmptyPayload, timeout_seconds=lambda s: s.platform_timeout_seconds + 1))
    assert registry.get("unit.plain") is plain  # nothing to resolve: the declaration itself
    assert "unit.derived" in registry and registry.names() == ["unit.derived", "unit.plain"]
    with pytest.raises(ConfigurationError, match="takes timeout_seconds from the settings"):
        registry.get("unit.derived")
    registry.configure(settings(platform_timeout_seconds=7))
    assert registry.get("unit.derived").timeout_seconds == 8
    assert derived.timeout_seconds is not None and callable(derived.timeout_seconds)  # the declaration stays as declared
    # Declared after the registry was configured: resolved at once.
    registry.declare(JobType("unit.later", Keyed, limit_by=("account",), key_concurrency=lambda s: s.telegram_global_rate))
    assert registry.get("unit.later").key_concurrency == 30


def test_resolved_values_are_checked_like_declared_ones():
    with pytest.raises(ValidationError, match="key_concurrency must be at least 1"):
        JobType("unit.keyed", Keyed, limit_by=("account",), key_concurrency=lambda s: 0).resolve(settings())


def test_work_probes_are_named_by_path_and_imported_at_first_call():
    probe = function_at("os.path:join")
    assert probe == FunctionAt("os.path:join") and probe("a", "b") == os.path.join("a", "b")
    assert proxies.CHECK_ALL.has_work == function_at("shared.workloads.proxies:any_checkable_proxies")
    for bad in ("os.path.join", "os.path:", ":join", "os path:join"):
        with pytest.raises(ValidationError, match="package.module:function"):
            function_at(bad)


def test_workload_schedules_are_resolved_with_the_settings_object_given():
    names = {f.name for f in declared_schedules(settings(workload_schedules=False))}
    assert not names & {"proxies.check_all", "posts.start_due", "messages.send_due"}
    chosen = {f.name: f for f in declared_schedules(settings(workload_schedules=True, proxy_check_cron="*/7 * * * *"))}
    assert chosen["proxies.check_all"].cron == "*/7 * * * *" and chosen["proxies.check_all"].misfire_policy == "skip"
    assert chosen["posts.start_due"].cron == "*/10 * * * * *" and chosen["messages.send_due"].job_type == "messages.send_due"
    with pytest.raises(ScheduleInvalid) as refused:
        declared_schedules(settings(workload_schedules=True, posts_due_cron="* * *"))
    assert refused.value.field == "cron"


def test_a_recurring_declaration_may_not_change(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(recurring_module, "_recurring", {})  # this test's declarations stay its own
    recurring(proxies.CHECK_ALL, cron="0 * * * *", name="unit.hourly.sweep")
    recurring(proxies.CHECK_ALL, cron="0 * * * *", name="unit.hourly.sweep")  # the same again: fine
    with pytest.raises(ScheduleInvalid, match="declared twice, differently"):
        recurring(proxies.CHECK_ALL, cron="5 * * * *", name="unit.hourly.sweep")
