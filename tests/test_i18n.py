"""French by default, with a complete English catalogue."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from babel.messages.pofile import read_po

ROOT = Path(__file__).resolve().parent.parent
CATALOGUE = ROOT / "portal" / "translations" / "en" / "LC_MESSAGES" / "messages.po"


def extract_msgids(tmp_path: Path) -> set[str]:
    pot = tmp_path / "messages.pot"
    subprocess.run(
        [
            Path(sys.executable).parent / "pybabel",
            "-q",
            "extract",
            "-F",
            "babel.cfg",
            "-k",
            "_l",
            "-k",
            "lazy_gettext",
            "-o",
            pot,
            ".",  # babel.cfg's patterns (portal/**.py, templates/**) are relative to this root
        ],
        cwd=ROOT,
        check=True,
    )
    with pot.open("rb") as handle:
        return {
            message.id if isinstance(message.id, str) else message.id[0] for message in read_po(handle) if message.id
        }


def test_english_catalogue_translates_every_string_of_the_code(tmp_path):
    wanted = extract_msgids(tmp_path)
    # babel.cfg's patterns are relative to the extraction root: a wrong root extracts nothing.
    assert len(wanted) > 400, f"only {len(wanted)} strings extracted"
    with CATALOGUE.open("rb") as handle:
        catalogue = read_po(handle)
    missing, fuzzy = [], []
    for msgid in sorted(wanted):
        message = catalogue.get(msgid)
        if message is None:
            missing.append(msgid)
            continue
        strings = message.string if isinstance(message.string, tuple) else (message.string,)
        if not all(strings):
            missing.append(msgid)
        elif message.fuzzy:
            fuzzy.append(msgid)
    assert not missing, f"{len(missing)} strings lack an English translation, e.g. {missing[:5]}"
    assert not fuzzy, f"fuzzy translations: {fuzzy[:5]}"
