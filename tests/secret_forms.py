"""A secret in every encoding it can take on the wire or in a message, and a search for any
piece of them: what the leak tests look for."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterable
from urllib.parse import quote, quote_plus

PIECE = 8  # no run of this many characters of any encoding of a secret may survive
FILLER = "\u2591"  # never in a generated secret, so it cannot complete a piece of one


def base64_secret_part(prefix: bytes, secret: bytes, urlsafe: bool) -> tuple[str, str]:
    """base64(prefix + secret), and its part that only the secret's bytes decide."""
    encode = base64.urlsafe_b64encode if urlsafe else base64.b64encode
    encoded = encode(prefix + secret).decode("ascii")
    first = -(-8 * len(prefix) // 6)
    last = 8 * (len(prefix) + len(secret)) // 6
    return encoded, encoded[first:last]


# Each encoding: (what goes into the text, the part of it that is the secret's alone).
Encoding = Callable[[str, str], tuple[str, str]]


def _same(form: str) -> tuple[str, str]:
    return form, form


ENCODINGS: dict[str, Encoding] = {
    "as is": lambda s, u: _same(s),
    "utf-8 read as latin-1": lambda s, u: _same(s.encode().decode("latin-1")),
    "percent": lambda s, u: _same(quote(s, safe="")),
    "percent, lower-case hex": lambda s, u: _same(quote(s, safe="").replace("%", "%%").lower().replace("%%", "%")),
    "quote": lambda s, u: _same(quote(s)),
    "quote_plus": lambda s, u: _same(quote_plus(s)),
    "json ascii": lambda s, u: _same(json.dumps(s)[1:-1]),
    "json unicode": lambda s, u: _same(json.dumps(s, ensure_ascii=False)[1:-1]),
    "repr": lambda s, u: _same(repr(s)[1:-1]),
    "ascii": lambda s, u: _same(ascii(s)[1:-1]),
    "bytes repr": lambda s, u: _same(repr(s.encode())[2:-1]),
    "base64": lambda s, u: base64_secret_part(b"", s.encode(), False),
    "basic auth": lambda s, u: (lambda e, p: ("Basic " + e, p))(*base64_secret_part(f"{u}:".encode(), s.encode(), False)),
    "base64 url-safe user:secret": lambda s, u: base64_secret_part(f"{u}:".encode(), s.encode(), True),
    "proxy url": lambda s, u: (f"http://{quote(u)}:{quote(s, safe='')}@proxy.example:8080", quote(s, safe="")),
}


def pieces(form: str) -> set[str]:
    return {form[i : i + PIECE] for i in range(len(form) - PIECE + 1)}


def leaks(cleaned: str, secret: str, user: str = "user") -> list[str]:
    found = [f"the secret itself ({name})" for name in ["as is"] if secret in cleaned]
    for name, encoding in ENCODINGS.items():
        _, part = encoding(secret, user)
        found.extend(f"{name}: {piece!r}" for piece in pieces(part) if piece in cleaned)
    return found


def leaks_in(texts: Iterable[str], secrets: Iterable[str], user: str = "user") -> list[str]:
    """Every piece of every encoding of every secret found in any of the texts."""
    found = []
    for index, text in enumerate(texts):
        for secret in secrets:
            found.extend(f"text {index}: {leak}" for leak in leaks(text, secret, user))
    return found
