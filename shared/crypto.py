"""Secrets at rest: bot tokens, OAuth tokens and proxy passwords are stored as Fernet tokens.

Fernet (AES-128-CBC with HMAC-SHA256, from `cryptography`) is authenticated: a token that was
altered, or made under another key, fails to decrypt instead of yielding garbage. Keys come
from `JOBS_ENCRYPTION_KEY`; several comma-separated keys allow rotation (the first encrypts,
every one decrypts; `rotate` re-encrypts under the first).

Without a configured key, development uses a key derived from a public string, so a fresh
`make run` works and its data survives restarts. That key protects nothing; the settings refuse
to start in production without a real one.

Nothing here ever puts a plaintext or a key into an exception message.
"""

from __future__ import annotations

import base64
import hashlib
from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from shared.errors import ConfigurationError, PlatformError
from shared.settings import Settings, get_settings

# Public on purpose (it is in the source): the development key is a convenience, not a secret.
DEVELOPMENT_KEY_SEED = b"jobplatform insecure development key: never use in production"


class DecryptionError(PlatformError):
    """A stored secret could not be decrypted: it was altered, or JOBS_ENCRYPTION_KEY no longer holds its key."""


def development_key() -> bytes:
    """The insecure development key: deterministic, so every process of a machine agrees."""
    return base64.urlsafe_b64encode(hashlib.sha256(DEVELOPMENT_KEY_SEED).digest())


def _keys(settings: Settings) -> list[bytes]:
    if settings.encryption_key is None:
        if settings.env == "production":
            raise ConfigurationError("JOBS_ENCRYPTION_KEY is required in production")
        return [development_key()]
    keys = [k.strip().encode() for k in settings.encryption_key.get_secret_value().split(",") if k.strip()]
    if not keys:
        raise ConfigurationError("JOBS_ENCRYPTION_KEY is empty")
    return keys


def cipher(settings: Settings | None = None) -> MultiFernet:
    """The cipher for these settings (the process-wide settings when none are given)."""
    return _cipher(tuple(_keys(settings or get_settings())))


@lru_cache(maxsize=8)
def _cipher(keys: tuple[bytes, ...]) -> MultiFernet:
    try:
        return MultiFernet([Fernet(key) for key in keys])
    except (ValueError, TypeError):
        raise ConfigurationError(
            "JOBS_ENCRYPTION_KEY must be Fernet keys (32 url-safe base64-encoded bytes), comma-separated"
        ) from None


def encrypt(plaintext: str, settings: Settings | None = None) -> str:
    """The Fernet token (ASCII text, for a `*_encrypted` column) of a secret."""
    if not isinstance(plaintext, str) or not plaintext:
        raise ValueError("only a non-empty string can be encrypted")
    return cipher(settings).encrypt(plaintext.encode()).decode("ascii")


def decrypt(token: str, settings: Settings | None = None) -> str:
    """The secret a token holds; `DecryptionError` when no configured key opens it."""
    try:
        return cipher(settings).decrypt(token.encode("ascii")).decode()
    except (InvalidToken, UnicodeError, AttributeError):
        # `from None`: cryptography's exception carries nothing useful, and the token itself
        # must not travel further in a traceback than it has to.
        raise DecryptionError() from None


def rotate(token: str, settings: Settings | None = None) -> str:
    """The token re-encrypted under the first configured key (after adding a new key first)."""
    try:
        return cipher(settings).rotate(token.encode("ascii")).decode("ascii")
    except (InvalidToken, UnicodeError, AttributeError):
        raise DecryptionError() from None
