"""The workloads' domain services: what a product (or `jobctl`) calls to add proxies, social
accounts, posts, Telegram connections and proactive messages, and the fan-out queries the
recurring jobs run.

Every function takes the caller's SQLAlchemy session, so business rows and the jobs they need
commit together or not at all (jobs are only ever created through `shared.enqueue`). Secrets
are encrypted here, on the way in (`shared.crypto`), and never returned in clear.
"""

from shared.outside_text import clean

# The most characters of an error text the workloads store (error_message, failure_reason,
# status_reason, deactivated_reason). It is whatever a platform, a proxy or an exception said.
MAX_ERROR_TEXT = 2000


def error_text(text: str | None) -> str | None:
    """An error text as the workloads' columns store it: cleaned (see `shared.outside_text`),
    then cut to MAX_ERROR_TEXT."""
    return clean(text, limit=MAX_ERROR_TEXT)
