"""The platform's Celery app refuses to be built without a broker URL."""

from __future__ import annotations

import pytest

from shared.broker import make_celery
from shared.errors import ConfigurationError
from shared.settings import load_settings


def test_make_celery_without_a_broker_url_names_the_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("JOBS_BROKER_URL", raising=False)  # a session fixture may have set it
    with pytest.raises(ConfigurationError, match="JOBS_BROKER_URL"):
        make_celery(load_settings({}))


def test_make_celery_with_a_broker_url_uses_it() -> None:
    app = make_celery(load_settings({"JOBS_BROKER_URL": "redis://127.0.0.1:6379/0"}))
    assert app.conf.broker_url == "redis://127.0.0.1:6379/0"
