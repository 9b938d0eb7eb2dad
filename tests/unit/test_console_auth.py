"""Console passwords and settings: the hash format, verification, and the settings' checks."""

from __future__ import annotations

import re

import pytest

from shared.errors import ConfigurationError
from shared.passwords import hash_password, is_password_hash, verify_password
from shared.settings import console_users, load_settings


def test_hash_verifies_only_its_password_and_is_salted() -> None:
    first, second = hash_password("correct horse", n=2**10), hash_password("correct horse", n=2**10)
    assert first != second  # a random salt each time
    assert is_password_hash(first) and ":" not in first and "," not in first
    assert verify_password("correct horse", first) and verify_password("correct horse", second)
    assert not verify_password("correct horsE", first)
    assert not verify_password("correct horse", "scrypt$1$1$1$bad$bad")
    assert not verify_password("x", "plain")


def test_default_cost_is_scrypt_2_15() -> None:
    assert hash_password("pw").startswith("scrypt$32768$8$1$")


def test_users_setting_parsed() -> None:
    hashed = hash_password("pw", n=2**10)
    settings = load_settings({}, console_users=f"ada:admin:{hashed}, vic:viewer:{hashed}")
    assert console_users(settings) == {"ada": ("admin", hashed), "vic": ("viewer", hashed)}


@pytest.mark.parametrize("value, message", [
    ("ada:root:{h}", "role must be viewer or admin"),
    ("ada:admin", "must look like name:role:hash"),
    ("ada:admin:plaintext", "not one `jobctl console hash-password` makes"),
    ("ada:admin:{h},ada:viewer:{h}", "twice"),
])
def test_bad_users_setting_refused(value: str, message: str) -> None:
    hashed = hash_password("pw", n=2**10)
    with pytest.raises(ConfigurationError, match=re.escape(message)) as caught:
        load_settings({}, console_users=value.format(h=hashed))
    assert hashed not in str(caught.value) and "plaintext" not in str(caught.value)  # never echoes a hash


def test_secret_required_in_production_and_long_enough() -> None:
    base = {"env": "production", "flower_basic_auth": "a:b",
            "encryption_key": "ZmDfcTF7_60GrrY167zsiPd67pEvs0aGOv2oasOM1Pg="}
    from console.app import create_app

    with pytest.raises(ConfigurationError, match="JOBS_CONSOLE_SECRET .* is required when JOBS_ENV is production"):
        create_app(load_settings({}, **base))  # the console refuses to start; other processes need no secret
    with pytest.raises(ConfigurationError, match="at least 32"):
        load_settings({}, console_secret="short")


def test_port_and_address_defaults() -> None:
    settings = load_settings({})
    assert (settings.console_address, settings.console_port) == ("127.0.0.1", 5580)
    with pytest.raises(ConfigurationError):
        load_settings({}, console_port=70000)
