"""The platform's settings for the test process itself: applied to the environment for a while,
with the cached settings and database rebuilt on the way in and on the way out."""

from __future__ import annotations

import os
from contextlib import contextmanager
from typing import Iterator, Mapping

from shared.db import reset_database
from shared.settings import get_settings


@contextmanager
def applied(env: Mapping[str, str]) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    get_settings.cache_clear()
    reset_database()
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        get_settings.cache_clear()
        reset_database()
