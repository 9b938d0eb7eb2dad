"""Secrets at rest: Fernet with keys from the settings, rotation, and errors that say what is
wrong without ever carrying a key or a plaintext."""

from __future__ import annotations

import pytest
from cryptography.fernet import Fernet

from shared.crypto import DecryptionError, decrypt, development_key, encrypt, rotate
from shared.errors import ConfigurationError
from shared.settings import load_settings

SECRET = "123456789:AAsecret-bot-token_xyz"


def settings(**env: str):
    return load_settings({f"JOBS_{k.upper()}": v for k, v in env.items()})


def test_round_trip_under_a_configured_key():
    key = Fernet.generate_key().decode()
    token = encrypt(SECRET, settings(encryption_key=key))
    assert SECRET not in token and decrypt(token, settings(encryption_key=key)) == SECRET


def test_development_uses_a_fixed_key_so_every_process_agrees():
    assert development_key() == development_key()
    token = encrypt(SECRET, settings())
    assert decrypt(token, settings()) == SECRET
    assert Fernet(development_key()).decrypt(token.encode()).decode() == SECRET  # and so can anyone: insecure


def test_production_refuses_to_start_without_a_key():
    with pytest.raises(ConfigurationError) as refused:
        settings(env="production", flower_basic_auth="a:b")
    assert "JOBS_ENCRYPTION_KEY is required" in str(refused.value)


def test_a_malformed_key_is_refused_without_being_echoed():
    with pytest.raises(ConfigurationError) as refused:
        settings(encryption_key="not-a-key-but-secret-anyway")
    assert "Fernet keys" in str(refused.value) and "secret-anyway" not in str(refused.value)


def test_a_token_under_another_key_or_altered_raises_decryption_error():
    token = encrypt(SECRET, settings(encryption_key=Fernet.generate_key().decode()))
    with pytest.raises(DecryptionError) as failed:
        decrypt(token, settings(encryption_key=Fernet.generate_key().decode()))
    assert SECRET not in str(failed.value) and token not in str(failed.value)
    assert failed.value.__cause__ is None and failed.value.__suppress_context__
    with pytest.raises(DecryptionError):
        decrypt(token[:-4] + "AAAA", settings())


def test_rotation_old_keys_decrypt_the_first_encrypts():
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    token = encrypt(SECRET, settings(encryption_key=old))
    both = settings(encryption_key=f"{new},{old}")
    assert decrypt(token, both) == SECRET
    rotated = rotate(token, both)
    assert decrypt(rotated, settings(encryption_key=new)) == SECRET


def test_settings_never_show_the_key():
    key = Fernet.generate_key().decode()
    configured = settings(encryption_key=key)
    assert key not in repr(configured) and key not in str(configured.model_dump())


def test_only_non_empty_strings_are_encrypted():
    with pytest.raises(ValueError):
        encrypt("", settings())
