"""Text from people and clients: cleaned at input, neutralised on output.

A control character (C0, DEL, C1), a bidi override or isolate, or an invisible separator
in a name can forge a line in a log or an export, drive a terminal (ESC and the 8-bit CSI
\\x9b), or make ``fdp.exe`` read as ``exe.pdf``. Names are cleaned when they come in;
whatever is stored anyway (the journal keeps what it was given, as evidence) is made
visible when it is shown or exported.
"""

from __future__ import annotations

import json
import re
import unicodedata
from typing import Any

# Zero-width (non-)joiners U+200C/U+200D are left alone: Persian, Indic scripts and emoji
# sequences need them, and they can neither break a line nor reorder text.
UNSAFE = re.compile(
    "[\x00-\x1f\x7f-\x9f"  # C0, DEL, C1
    "\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069"  # bidi marks, embeddings, overrides, isolates
    "\u200b\u2028\u2029\u2060-\u2064\u206a-\u206f\ufeff"  # invisible separators and formatting
    "\ud800-\udfff]"  # lone surrogates (from JSON "\udcff" escapes): no encoder accepts them
)
_NAMED = {"\r": "\\r", "\n": "\\n", "\t": "\\t", "\x1b": "\\x1b"}


# Python counts the C0 separators \x1c-\x1f as white space; nobody types them as one.
_SEPARATING = frozenset("\t\n\v\f\r\x85\u2028\u2029")


def _drop(match: re.Match[str]) -> str:
    # A line break or tab between two words stays a separation, not a glued word.
    return " " if match.group() in _SEPARATING else ""


def clean_name(value: str | None) -> str:
    """A display name as a person meant it: no unsafe characters, single spaces, NFC."""
    if not value:
        return ""
    text = UNSAFE.sub(_drop, value)
    # NFC after stripping: removing a control may bring a letter and its accent together.
    return unicodedata.normalize("NFC", " ".join(text.split()))


def name_filter(value: Any) -> Any:
    """``clean_name`` as a WTForms filter (runs before the validators, so an empty result is refused)."""
    return clean_name(value) if isinstance(value, str) else value


def visible(text: str | None) -> str:
    """``text`` with every unsafe character replaced by a visible escape (``\\r``, ``\\u202e``)."""
    if not text:
        return ""
    return UNSAFE.sub(lambda match: _NAMED.get(match.group(), f"\\u{ord(match.group()):04x}"), text)


def json_dumps(value: Any, **options: Any) -> str:
    """JSON that round-trips exactly but carries no raw unsafe character.

    ``ensure_ascii=False`` keeps accents readable and escapes only C0; C1, bidi and
    separators would reach a terminal raw, so they get JSON escapes too. They can only
    occur inside strings, where ``\\uXXXX`` denotes the same character.
    """
    text = json.dumps(value, ensure_ascii=False, **options)
    return UNSAFE.sub(lambda match: f"\\u{ord(match.group()):04x}", text)
