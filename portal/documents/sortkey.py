"""The accent- and case-insensitive key that names are sorted and searched by.

French collation ignores accents and case at the first level ("école" sorts with "ecole",
before "Été"), which neither SQLite nor a default PostgreSQL collation does. The key is
stored next to the name (``name_key``) and maintained on every write, so sorting and
searching use an ordinary index on both databases.
"""

from __future__ import annotations

import unicodedata

# Letters that NFKD does not decompose but that French (and its neighbours) read as two.
_EXPANSIONS = str.maketrans({"œ": "oe", "æ": "ae", "ø": "o", "đ": "d", "ł": "l", "ı": "i"})


def sort_key(value: str | None) -> str:
    """Lower-case, accent-free, ligature-expanded form of ``value`` (same length limit as names)."""
    text = unicodedata.normalize("NFKD", (value or "").casefold())
    text = "".join(ch for ch in text if not unicodedata.combining(ch))
    return text.translate(_EXPANSIONS)[:255]
