"""portal.security.text: names cleaned at input, controls neutralised on output."""

from __future__ import annotations

import json

import pytest

from portal.security.text import clean_name, json_dumps, visible

FORGED = "x\r\n[audit] admin deleted all\x1b[31m"


@pytest.mark.parametrize(
    ("raw", "cleaned"),
    [
        (FORGED, "x [audit] admin deleted all[31m"),
        ("  Awa \t Diallo  ", "Awa Diallo"),
        ("Awa\u2028Diallo\u0085!", "Awa Diallo !"),
        # Bidi overrides would show "fdp.exe" as "exe.pdf"; C1 CSI (\x9b) is a terminal escape.
        ("Rapport\u202efdp.exe", "Rapportfdp.exe"),
        ("a\u2066b\u2069c\u200fd\u061ce\ufeff\u200bf\x9b2J", "abcdef2J"),
        ("nul\x00byte\x7f", "nulbyte"),
        # NFC: a decomposed é becomes the single code point, so one name has one spelling.
        ("Le\u0301a", "Léa"),
        # Joiners are letters' business (Persian, Indic scripts, emoji): kept.
        ("می\u200cخواهم 👩\u200d💻", "می\u200cخواهم 👩\u200d💻"),
        ("\x1b\r\n\u202e", ""),
        (None, ""),
    ],
)
def test_clean_name(raw, cleaned):
    assert clean_name(raw) == cleaned


def test_visible_escapes_every_unsafe_character():
    assert visible(FORGED) == "x\\r\\n[audit] admin deleted all\\x1b[31m"
    assert visible("a\u202eb\x9bc\u2028d") == "a\\u202eb\\u009bc\\u2028d"
    assert visible("Léa 👩\u200d💻") == "Léa 👩\u200d💻"


def test_json_dumps_escapes_what_a_terminal_would_obey_and_round_trips():
    value = {"label": "a\u202eb\x9bc\x1b\u2028d\ud800", "name": "Léa"}
    text = json_dumps(value)
    for raw in ("\u202e", "\x9b", "\x1b", "\u2028", "\ud800"):
        assert raw not in text
    assert "Léa" in text  # accents stay readable
    assert json.loads(text) == value
    text.encode("utf-8")  # a lone surrogate would have made the response fail
