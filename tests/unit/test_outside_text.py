"""The one cleaner of text from outside: random secrets in every encoding, at every offset
around the cut, never survive in whole or in part; what PostgreSQL cannot hold never does."""

from __future__ import annotations

from urllib.parse import quote

import pytest
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

from shared.outside_text import REDACTED, TRUNCATED, Redactor, clean, storable
from tests.secret_forms import ENCODINGS, FILLER, PIECE, leaks, pieces

secrets = st.text(
    alphabet=st.characters(
        categories=("L", "N", "P", "S", "Zs", "Cc"), exclude_characters=FILLER + "\x00",
    ),
    min_size=PIECE, max_size=32,
)
users = st.text(alphabet=st.characters(categories=("L", "N"), max_codepoint=0x24F), min_size=1, max_size=12)


def _skeleton_has_pieces(secret: str, user: str) -> bool:
    # A secret some of whose pieces are spelled by the cleaner's own marks (or the user name)
    # would be "found" there; such secrets say nothing about leaks.
    skeleton = FILLER + REDACTED + TRUNCATED + FILLER + user + " Basic http:// @proxy.example:8080"
    return any(piece in skeleton for _, enc in ENCODINGS.items() for piece in pieces(enc(secret, user)[1]))


@settings(max_examples=400, deadline=None)
@given(
    secret=secrets, user=users, encoding=st.sampled_from(sorted(ENCODINGS)),
    limit=st.integers(min_value=len(TRUNCATED) + 1, max_value=300), shift=st.integers(min_value=-40, max_value=8),
    after=st.integers(min_value=0, max_value=300), as_bytes=st.booleans(),
)
@example(secret="pässwörd-€-geheim", user="bob", encoding="utf-8 read as latin-1", limit=500, shift=-10,
         after=100, as_bytes=False)
def test_no_secret_survives_in_any_encoding_at_any_offset_around_the_cut(
    secret: str, user: str, encoding: str, limit: int, shift: int, after: int, as_bytes: bool,
) -> None:
    assume(not _skeleton_has_pieces(secret, user))
    form, _ = ENCODINGS[encoding](secret, user)
    # The form starts `shift` characters from where the cut would fall: mostly straddling it.
    before = max(0, limit + shift)
    text = FILLER * before + form + FILLER * after
    cleaned = clean(text.encode() if as_bytes else text, secrets=[secret], limit=limit)
    assert len(cleaned) <= limit
    assert leaks(cleaned, secret, user) == []


@settings(max_examples=200, deadline=None)
@given(secret=secrets, user=users, limit=st.integers(min_value=len(TRUNCATED) + 1, max_value=200),
       start=st.integers(min_value=0, max_value=220), nul_at=st.integers(min_value=1, max_value=PIECE - 1))
def test_a_nul_slipped_into_a_secret_does_not_hide_it(secret: str, user: str, limit: int, start: int, nul_at: int) -> None:
    assume(not _skeleton_has_pieces(secret, user))
    text = FILLER * start + secret[:nul_at] + "\x00" + secret[nul_at:] + FILLER * 10
    cleaned = clean(text, secrets=[secret], limit=limit)
    assert "\x00" not in cleaned and leaks(cleaned, secret, user) == []


@settings(max_examples=300, deadline=None)
@given(text=st.one_of(st.text(), st.binary()), limit=st.one_of(st.none(), st.integers(min_value=len(TRUNCATED) + 1, max_value=100)))
def test_the_result_is_storable_and_within_the_limit(text: str | bytes, limit: int | None) -> None:
    cleaned = clean(text, limit=limit)
    assert "\x00" not in cleaned
    cleaned.encode("utf-8")  # no lone surrogate: this would raise
    assert limit is None or len(cleaned) <= limit


def test_bytes_are_utf8_with_replacement_never_latin1() -> None:
    assert clean("pässwort".encode()) == "pässwort"
    assert clean(b"caf\xe9 \x00ok") == "caf\ufffd ok"
    assert storable("a\ud800b\x00c") == "a\ufffdbc"
    assert clean(ValueError("boom\x00")) == "boom" and clean(ValueError()) == "ValueError"


def test_a_token_straddling_the_old_500_character_cut_of_graph_leaves_nothing() -> None:
    token = "EAAGfakeGraphAccessTokenSecret0123456789"
    for offset in range(480, 501):
        reply = "x" * offset + token + " trailing words" * 10
        cleaned = clean(reply, secrets=[token], limit=500)
        assert not any(piece in cleaned for piece in pieces(token)), offset


def test_credential_shapes_are_redacted_without_a_list() -> None:
    text = "GET https://api/bot123:AAFsecret-part/sendMessage?access_token=tok&x=1\r\nProxy-Authorization: Basic Ym9iOnB3"
    cleaned = clean(text)
    assert "AAFsecret" not in cleaned and "tok&" not in cleaned and "Ym9iOnB3" not in cleaned
    assert "/bot<redacted>/sendMessage" in cleaned and "access_token=<redacted>&x=1" in cleaned


def test_mixed_forms_inside_one_secret_are_found() -> None:
    secret = "pä ss/wörd"
    half = quote(secret[:4], safe="") + secret[4:]  # half percent-encoded, half raw
    assert clean(f"[{half}]", secrets=[secret]) == f"[{REDACTED}]"


def test_no_secrets_and_short_text_change_nothing_but_storability() -> None:
    assert clean("plain words, 100% fine") == "plain words, 100% fine"
    assert clean(None) is None
    assert Redactor([None, ""]).redact("anything") == "anything"
    with pytest.raises(ValueError):
        clean("x", limit=len(TRUNCATED))
