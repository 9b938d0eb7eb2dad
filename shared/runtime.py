"""The running stack's service URLs, for commands started beside `jobctl up`.

With nothing configured, `jobctl up` starts embedded servers on URLs nobody configured; it
writes them to `<data_dir>/runtime.json` while it runs, so `jobctl doctor` (or any other
command) in another terminal finds the same stack. Configured URLs always win.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from shared.settings import Settings

RUNTIME_FILE = "runtime.json"


def write_runtime(settings: Settings, database_url: str, broker_url: str) -> Path:
    path = settings.data_dir / RUNTIME_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"database_url": database_url, "broker_url": broker_url, "pid": os.getpid()}))
    return path


def clear_runtime(settings: Settings) -> None:
    (settings.data_dir / RUNTIME_FILE).unlink(missing_ok=True)


def with_runtime_urls(settings: Settings) -> Settings:
    """Fill unset URLs from a live `jobctl up` of this project, if there is one."""
    if settings.database_url and settings.broker_url:
        return settings
    path = settings.data_dir / RUNTIME_FILE
    try:
        found = json.loads(path.read_text())
        os.kill(int(found["pid"]), 0)
    except (OSError, ValueError, KeyError):
        return settings
    return settings.model_copy(update={
        "database_url": settings.database_url or found["database_url"],
        "broker_url": settings.broker_url or found["broker_url"],
    })


def mask_url(url: str | None) -> str:
    """The URL with its password replaced by ***, for printing."""
    if not url:
        return "(not set)"
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))
