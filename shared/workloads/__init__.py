"""The workloads' domain services: what a product (or `jobctl`) calls to add proxies, social
accounts, posts, Telegram connections and proactive messages, the fan-out queries the
recurring jobs run, and every read and write of domain rows the handlers make (a handler in
`worker/handlers/` only orders the steps and talks to the outside world).

Every function takes the caller's SQLAlchemy session, so business rows and the jobs they need
commit together or not at all (jobs are only ever created through `shared.enqueue`), and the
settings it needs as arguments (never looked up). Secrets are encrypted here, on the way in
(`shared.crypto`), and decrypted only for the one attempt that uses them.
"""

from shared.crypto import DecryptionError
from shared.outcomes import Discard
from shared.outside_text import clean

# The most characters of an error text the workloads store (error_message, failure_reason,
# status_reason, deactivated_reason). It is whatever a platform, a proxy or an exception said.
MAX_ERROR_TEXT = 2000


def error_text(text: str | None) -> str | None:
    """An error text as the workloads' columns store it: cleaned (see `shared.outside_text`),
    then cut to MAX_ERROR_TEXT."""
    return clean(text, limit=MAX_ERROR_TEXT)


def undecryptable(what: str, exc: DecryptionError) -> Discard:
    """How every workload ends an attempt whose secret (a proxy password, a bot or access
    token, a webhook secret) no configured key opens: discarded, not retried, since no retry
    brings the key back. The reason names the row, never the secret."""
    return Discard(f"{what}: {exc}")


def flagged_for_review(what: str, reason: str) -> Discard:
    """How every workload ends an attempt that left its row in `needs_review` (the send may
    have reached the platform, which cannot be asked): discarded, since only an operator's
    verdict may send again."""
    return Discard(f"{what} flagged for review: {reason}")
