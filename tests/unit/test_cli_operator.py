"""The operator CLI's pure parts (times, tables, JSON) and how `jobctl flower` runs Flower."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import click
import pytest

from shared.cli.flower import flower_command
from shared.cli.operator import TIME, cell, emit_json, table
from shared.errors import ConfigurationError
from shared.settings import Settings, load_settings

BASE = {"JOBS_BROKER_URL": "redis://127.0.0.1:6379/0", "JOBS_DATABASE_URL": "postgresql://u@db/jobs"}


def production(**settings: str) -> dict[str, str]:
    """Production settings with whatever else production requires besides Flower's credentials."""
    env = {**BASE, "JOBS_ENV": "production", **settings}
    if "encryption_key" in Settings.model_fields:
        from cryptography.fernet import Fernet

        env["JOBS_ENCRYPTION_KEY"] = Fernet.generate_key().decode()
    return env


def test_times_are_iso_8601_utc_by_default_or_an_age():
    assert TIME.convert("2026-03-01T12:00", None, None) == datetime(2026, 3, 1, 12, tzinfo=timezone.utc)
    assert TIME.convert("2026-03-01T12:00+02:00", None, None) == datetime(2026, 3, 1, 10, tzinfo=timezone.utc)
    for age, seconds in (("90s", 90), ("15m", 900), ("2h", 7200), ("1.5d", 129600), ("1w", 604800)):
        expected = datetime.now(timezone.utc) - timedelta(seconds=seconds)
        assert abs((TIME.convert(age, None, None) - expected).total_seconds()) < 5, age
    with pytest.raises(click.BadParameter, match="neither an ISO 8601 time nor an age"):
        TIME.convert("yesterday", None, None)


def test_tables_align_cut_and_show_times_in_utc():
    rows = [{"id": 1, "when": datetime(2026, 3, 1, 14, tzinfo=timezone(timedelta(hours=2))), "error": "x" * 80,
             "rate": 0.0667, "paused": True},
            {"id": 22, "when": None, "error": "two\nlines", "rate": 1234.5, "paused": False}]
    lines = table(rows, ["id", "when", "error", "rate", "paused"], widths={"error": 10}).splitlines()
    assert lines[0].split() == ["ID", "WHEN", "ERROR", "RATE", "PAUSED"]
    assert lines[1].split() == ["1", "2026-03-01", "12:00:00", "xxxxxxxxx…", "0.07", "yes"]
    assert lines[2].split() == ["22", "-", "two", "lines", "1234", "no"]
    assert lines[0].index("ERROR") == lines[1].index("xxx") == lines[2].index("two")
    assert (cell(0.0667), cell(3.25), cell(250.4), cell(None), cell(False)) == ("0.07", "3.2", "250", "-", "no")


def test_json_output_is_plain_data(capsys):
    emit_json([{"at": datetime(2026, 3, 1, tzinfo=timezone.utc), "n": 1, "payload": {"k": [1, 2]}}])
    assert json.loads(capsys.readouterr().out) == [{"at": "2026-03-01T00:00:00+00:00", "n": 1, "payload": {"k": [1, 2]}}]


def test_settings_refuse_production_without_flower_credentials():
    with pytest.raises(ConfigurationError, match="JOBS_FLOWER_BASIC_AUTH .* is required when JOBS_ENV is production"):
        load_settings(production())


def test_flower_gets_credentials_by_environment_events_on_and_listens_where_configured():
    settings = load_settings(production(JOBS_FLOWER_BASIC_AUTH="ops:secret", JOBS_FLOWER_PORT="5601",
                                        JOBS_FLOWER_ADDRESS="0.0.0.0"))
    argv, env = flower_command(settings)
    assert argv[1:3] == ["-m", "shared.cli.flower_process"], "the launcher that puts /metrics behind the auth"
    assert argv[-6:] == ["-A", "worker.app:app", "flower", "--port=5601", "--address=0.0.0.0", "--enable_events=True"]
    assert "--address=127.0.0.1" in flower_command(load_settings(production(JOBS_FLOWER_BASIC_AUTH="ops:secret")))[0]
    assert not any("secret" in arg for arg in argv), "a command line is visible to every user of the host"
    assert env["FLOWER_BASIC_AUTH"] == "ops:secret"
    assert env["JOBS_BROKER_URL"] == BASE["JOBS_BROKER_URL"]
    assert "--port=5999" in flower_command(settings, port=5999)[0]


def test_flower_without_credentials_only_in_development_and_only_on_loopback(monkeypatch):
    monkeypatch.setenv("FLOWER_BASIC_AUTH", "inherited:credentials")  # never passed on silently
    argv, env = flower_command(load_settings(BASE))
    assert "--address=127.0.0.1" in argv and "FLOWER_BASIC_AUTH" not in env
    protected = load_settings(production(JOBS_FLOWER_BASIC_AUTH="a:b"))
    with pytest.raises(ConfigurationError, match="JOBS_FLOWER_BASIC_AUTH .* is required when JOBS_ENV is production"):
        flower_command(protected.model_copy(update={"flower_basic_auth": None}))
    with pytest.raises(ConfigurationError, match="JOBS_BROKER_URL is not set"):
        flower_command(load_settings(BASE).model_copy(update={"broker_url": None}))
    with pytest.raises(ConfigurationError, match="only with JOBS_FLOWER_BASIC_AUTH"):
        flower_command(load_settings(dict(BASE, JOBS_FLOWER_ADDRESS="0.0.0.0")))
    with pytest.raises(ConfigurationError, match="JOBS_FLOWER_ADDRESS"):
        load_settings(dict(BASE, JOBS_FLOWER_ADDRESS="everywhere"))
