"""Settings refuse what they do not know and what does not fit together, clearly."""

from __future__ import annotations

import pytest

from shared.errors import ConfigurationError
from shared.settings import load_settings


def test_unknown_key_names_the_nearest_valid_one():
    with pytest.raises(ConfigurationError, match="unknown setting JOBS_DATABSE_URL; did you mean JOBS_DATABASE_URL"):
        load_settings({"JOBS_DATABSE_URL": "postgresql://h/db"})


def test_unknown_override_is_refused():
    with pytest.raises(ConfigurationError, match="did you mean heartbeat_seconds"):
        load_settings({}, heartbeat_second=1)


@pytest.mark.parametrize("key, value, words", [
    ("JOBS_DATABASE_URL", "mysql://h/db", "JOBS_DATABASE_URL: database_url must start with one of postgresql://"),
    ("JOBS_DATABASE_URL", "postgresql:///nohost", "names no host"),
    ("JOBS_BROKER_URL", "kafka://h", "JOBS_BROKER_URL: broker_url must start with one of redis://"),
    ("JOBS_MAX_PAYLOAD_BYTES", "ten", "JOBS_MAX_PAYLOAD_BYTES"),
    ("JOBS_ENV", "staging", "JOBS_ENV"),
])
def test_bad_values_are_named(key, value, words):
    with pytest.raises(ConfigurationError) as caught:
        load_settings({key: value})
    assert words in str(caught.value)


def test_fields_are_checked_together():
    with pytest.raises(ConfigurationError, match="at least twice JOBS_HEARTBEAT_SECONDS"):
        load_settings({"JOBS_HEARTBEAT_SECONDS": "10", "JOBS_WORKER_STALE_AFTER_SECONDS": "15"})
    with pytest.raises(ConfigurationError, match="JOBS_FLOWER_BASIC_AUTH .* is required when JOBS_ENV is production"):
        load_settings({"JOBS_ENV": "production"})


def test_good_settings_load_and_normalise():
    settings = load_settings({
        "JOBS_DATABASE_URL": "postgresql://u:p@db:5432/jobs", "JOBS_BROKER_URL": "amqp://g:g@mq//",
        "JOBS_DEFAULT_QUEUES": "a, b", "JOBS_IMPORTS": "my.jobs",
    })
    assert settings.database_url == "postgresql+psycopg://u:p@db:5432/jobs"
    assert settings.default_queues == ("a", "b") and settings.imports == ("my.jobs",)
    assert not settings.is_redis_broker
