"""Password hashes for the console's users: scrypt with a random salt, in one self-describing
string `scrypt$<n>$<r>$<p>$<salt>$<hash>` (salt and hash url-safe base64, no padding), so a hash
carries its own cost parameters and stays verifiable after the defaults change. The string
has no ':' or ',', so it fits a `name:role:hash` entry of JOBS_CONSOLE_USERS.

Lives in `shared` because the settings check the format and `jobctl console hash-password`
makes hashes; the console verifies them.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets

SCHEME = "scrypt"
# n=2**15, r=8: about 32 MiB and tens of ms per check, OWASP's minimum for scrypt.
N, R, P = 2**15, 8, 1
_MAXMEM = 64 * 1024 * 1024
HASH_PATTERN = re.compile(r"^scrypt\$(\d+)\$(\d+)\$(\d+)\$([A-Za-z0-9_-]{16,})\$([A-Za-z0-9_-]{32,})$")


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def hash_password(password: str, *, n: int = N, r: int = R, p: int = P) -> str:
    if not password:
        raise ValueError("the password is empty")
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, maxmem=_MAXMEM, dklen=32)
    return f"{SCHEME}${n}${r}${p}${_b64(salt)}${_b64(digest)}"


def is_password_hash(value: str) -> bool:
    return HASH_PATTERN.match(value) is not None


def verify_password(password: str, stored: str) -> bool:
    """True when `password` matches; False for a wrong password or a malformed hash."""
    match = HASH_PATTERN.match(stored)
    if match is None:
        return False
    n, r, p = (int(match.group(i)) for i in (1, 2, 3))
    try:
        digest = hashlib.scrypt(password.encode(), salt=_unb64(match.group(4)), n=n, r=r, p=p, maxmem=_MAXMEM, dklen=32)
    except ValueError:
        return False
    return hmac.compare_digest(digest, _unb64(match.group(5)))
