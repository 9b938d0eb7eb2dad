"""Text from outside, made safe to store: the one function every such text passes through.

Remote platform answers, proxy replies, exception messages and tracebacks, job log lines: none
of them is ours, and each can break a write or leak a secret. `clean` turns any of them into
text PostgreSQL takes and that holds no credential, in this order:

1. bytes are decoded as UTF-8 with replacement (never latin-1: its mojibake hides a secret
   from a plain search);
2. what a `text` column cannot hold goes: NUL is dropped (dropped, not replaced, so a NUL
   slipped into a secret does not split it past recognition), lone surrogates become U+FFFD;
3. the given secrets are redacted in every encoding they take on the wire or in a message
   (below), and so are credential shapes no secret list names (a bot token in a URL path,
   `access_token=...`, an `Authorization:` header value);
4. only then is the text cut to the column's limit, so a cut never leaves part of a secret.

A secret is matched character by character, each character in any of its forms: itself, its
UTF-8 bytes read as latin-1 or cp1252 (mojibake), U+FFFD (its bytes in another encoding read
as UTF-8), percent-encoding of its UTF-8 bytes (either hex case; `+` for a space), JSON and
Python escapes (`\\u00e9`, surrogate pairs, `\\xe9`, `\\U0001f600`, the UTF-8 bytes as
`\\xc3\\xa9` in a bytes repr, a backslash before punctuation), HTML character references. So
a secret written half percent-encoded and half raw is still found. Base64 is matched on the
part of the encoding that only the secret's bytes decide, at each of the three alignments a
prefix can give it: this catches `base64(secret)` as well as `base64("user:" + secret)`
(Basic auth, proxy URLs) for any user, and the whole base64 run around it is redacted.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterable
from functools import lru_cache
from typing import overload

REDACTED = "<redacted>"
TRUNCATED = "... (truncated)"

# Credential shapes that need no secret list: `/bot<id>:<secret>` (Telegram puts the token in
# the path), `access_token=<token>` (Graph takes it as a parameter), `Authorization: Basic x`.
_CREDENTIAL_SHAPES = re.compile(
    r"(/bot)\d+:[\w-]+"
    r"|((?:^|[?&\s\"'])access_token=)[^&\s\"']+"
    r"|((?:proxy-)?authorization:\s*(?:basic|bearer)\s+)[^\s\"',;]+",
    re.IGNORECASE,
)
_NUL = "\x00"
_SURROGATES = re.compile("[\ud800-\udfff]")
_BASE64_ALPHABET = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/-_".decode())
# A base64 core shorter than this would match ordinary words by chance.
_MIN_BASE64_CORE = 6
# The longest form one character can take (4 UTF-8 bytes as `\xNN` each).
_MAX_FORM_PER_CHAR = 16


class Redactor:
    """Finds a fixed set of secrets in any of their encodings (see the module docstring)."""

    def __init__(self, secrets: Iterable[str | None]) -> None:
        unique = sorted({s for s in secrets if s}, key=len, reverse=True)
        self.secrets: tuple[str, ...] = tuple(unique)
        # Bounds how far past a cut a form that starts before it can reach.
        self.max_form_length = max((len(s) for s in unique), default=0) * _MAX_FORM_PER_CHAR
        cores = sorted({core for s in unique for core in _base64_cores(s)}, key=len, reverse=True)
        spelled = [_spelled(s) for s in unique]
        branches = []
        if cores:
            branches.append("(?P<b64>" + "|".join(re.escape(core) for core in cores) + ")")
        branches.extend(spelled)
        self._pattern = re.compile("|".join(branches), re.IGNORECASE) if branches else None
        self._has_base64 = bool(cores)

    def __call__(self, text: str) -> str:
        """The text with every form of every secret (and every credential shape) replaced."""
        return self.redact(text)

    def redact(self, text: str, stop: int | None = None) -> str:
        """Redact; with `stop`, keep only what starts before it (a match that starts before it
        is replaced whole, however far it reaches)."""
        out: list[str] = []
        position = 0
        if self._pattern is not None:
            for match in self._pattern.finditer(text):
                start, end = match.span()
                if stop is not None and start >= stop:
                    break
                if start < position:
                    continue  # inside a base64 run already redacted
                if self._has_base64 and match.group("b64"):
                    start, end = _base64_run(text, start, end, floor=position)
                out.append(text[position:start])
                out.append(REDACTED)
                position = end
        out.append(text[position:stop] if stop is None or position < stop else "")
        return _CREDENTIAL_SHAPES.sub(_keep_label, "".join(out))


@overload
def clean(text: None, *, secrets: Iterable[str | None] | Redactor = (), limit: int | None = None) -> None: ...
@overload
def clean(
    text: str | bytes | bytearray | memoryview | BaseException,
    *, secrets: Iterable[str | None] | Redactor = (), limit: int | None = None,
) -> str: ...
def clean(
    text: str | bytes | bytearray | memoryview | BaseException | None,
    *,
    secrets: Iterable[str | None] | Redactor = (),
    limit: int | None = None,
) -> str | None:
    """Text from outside, ready for a table or a log: decoded, storable, redacted, then cut.

    `secrets`: the credentials this text may echo (a proxy password, a bot token, an access
    token, a webhook secret), or a `Redactor` built once for them. `limit`: the most characters
    the result may have (the column's limit), counting the truncation mark.
    """
    if text is None:
        return None
    if limit is not None and limit <= len(TRUNCATED):
        raise ValueError(f"limit must be more than {len(TRUNCATED)} characters")
    redactor = secrets if isinstance(secrets, Redactor) else redactor_for(tuple(secrets))
    value = storable(text)
    if limit is None:
        return redactor.redact(value)
    if len(value) <= limit:
        redacted = redactor.redact(value)
        # The mark can be longer than what it hides: the limit still holds.
        return redacted if len(redacted) <= limit else redacted[: limit - len(TRUNCATED)] + TRUNCATED
    # Redact past the cut too: a secret that starts before the cut must be seen whole to be
    # recognised. Beyond `stop` nothing can reach back into what is kept.
    stop = limit + redactor.max_form_length + 1
    redacted = redactor.redact(value[: stop + redactor.max_form_length], stop=stop)
    if len(redacted) <= limit and len(value) <= stop:
        return redacted
    return redacted[: limit - len(TRUNCATED)] + TRUNCATED


def storable(text: str | bytes | bytearray | memoryview | BaseException) -> str:
    """Text a PostgreSQL `text` or `jsonb` value can hold: UTF-8 decoded, no NUL, no surrogates.
    Nothing is redacted: use `clean` for anything that is stored."""
    if isinstance(text, (bytes, bytearray, memoryview)):
        value = bytes(text).decode("utf-8", "replace")
    elif isinstance(text, BaseException):
        value = str(text) or type(text).__name__
    else:
        value = str(text)
    if _NUL in value:
        value = value.replace(_NUL, "")
    return _SURROGATES.sub("\ufffd", value)


@lru_cache(maxsize=256)
def redactor_for(secrets: tuple[str | None, ...]) -> Redactor:
    """A cached `Redactor` (compiling one costs more than using it)."""
    return Redactor(secrets)


def _keep_label(match: re.Match[str]) -> str:
    return (match.group(1) or match.group(2) or match.group(3)) + REDACTED


def _base64_run(text: str, start: int, end: int, floor: int) -> tuple[int, int]:
    """Widen a base64 core to the whole run of base64 characters (and padding) around it."""
    while start > floor and text[start - 1] in _BASE64_ALPHABET:
        start -= 1
    while end < len(text) and text[end] in _BASE64_ALPHABET:
        end += 1
    while end < len(text) and text[end] == "=":
        end += 1
    return start, end


def _base64_cores(secret: str) -> set[str]:
    """The base64 characters decided by the secret's bytes alone, at each prefix alignment, in
    the standard and the URL-safe alphabet."""
    data = secret.encode("utf-8")
    cores = set()
    for shift in range(3):
        encoded = base64.b64encode(b"\0" * shift + data).decode("ascii")
        first = -(-8 * shift // 6)  # the first character with no bit of the prefix
        last = 8 * (shift + len(data)) // 6  # past the last character with no bit of what follows
        core = encoded[first:last]
        if len(core) >= _MIN_BASE64_CORE:
            cores.update((core, core.translate(str.maketrans("+/", "-_"))))
    return cores


def _spelled(secret: str) -> str:
    """A pattern matching the secret with each character in any of its forms."""
    return "".join(_character(c) for c in secret)


@lru_cache(maxsize=4096)
def _character(c: str) -> str:
    data = c.encode("utf-8")
    code = ord(c)
    forms = {
        c,
        "".join(f"%{b:02X}" for b in data),
        json.dumps(c)[1:-1],
        ascii(c)[1:-1],
        repr(data)[2:-1],
        f"&#{code};",
        f"&#x{code:x};",
    }
    if code < 0x10000:
        forms.add(f"\\u{code:04x}")
    else:
        high, low = 0xD800 + ((code - 0x10000) >> 10), 0xDC00 + ((code - 0x10000) & 0x3FF)
        forms.update((f"\\U{code:08x}", f"\\u{high:04x}\\u{low:04x}"))
    if c == " ":
        forms.add("+")
    if c.isascii() and not c.isalnum():
        forms.add("\\" + c)
        forms.add({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#x27;"}.get(c, c))
    pieces = [re.escape(form) for form in forms]
    if not c.isascii():
        forms_mojibake = {data.decode("latin-1"), data.decode("cp1252", "replace")}
        pieces.extend(re.escape(form) for form in forms_mojibake)
        pieces.append("\ufffd{1,4}")  # its bytes in another encoding, read as UTF-8
    pieces.sort(key=len, reverse=True)
    return "(?:" + "|".join(pieces) + ")"
