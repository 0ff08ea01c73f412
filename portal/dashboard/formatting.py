"""Numbers, sizes and devices as the member reads them (their language's separators and units)."""

from __future__ import annotations

import re
from typing import Any

from flask_babel import format_decimal, format_percent
from flask_babel import lazy_gettext as _l

# Binary units: French writes octets (o, Kio, Mio), English bytes (B, KiB, MiB).
UNITS = (_l("o"), _l("Kio"), _l("Mio"), _l("Gio"), _l("Tio"))


def number(value: int | float | None) -> str:
    """``1 234 567`` with a narrow no-break space in French, ``1,234,567`` in English."""
    return format_decimal(value or 0, format="#,##0")


def size(value: int | None) -> str:
    amount = float(value or 0)
    unit = 0
    while amount >= 1024 and unit < len(UNITS) - 1:
        amount /= 1024
        unit += 1
    pattern = "#,##0" if unit == 0 else "#,##0.#"
    return f"{format_decimal(amount, format=pattern)}\u00a0{UNITS[unit]}"


def percent(part: int, whole: int) -> str:
    return format_percent(part / whole if whole else 0)


_BROWSERS = (
    ("Edg/", "Edge"),
    ("OPR/", "Opera"),
    ("Firefox/", "Firefox"),
    ("Chromium/", "Chromium"),
    ("Chrome/", "Chrome"),
    ("Safari/", "Safari"),
    ("curl/", "curl"),
    ("python-requests", "Python"),
)
_SYSTEMS = (
    ("Android", "Android"),
    ("iPhone", "iPhone"),
    ("iPad", "iPad"),
    ("Windows", "Windows"),
    ("Mac OS X", "macOS"),
    ("Macintosh", "macOS"),
    ("CrOS", "ChromeOS"),
    ("Linux", "Linux"),
)


def device_name(user_agent: str | None) -> Any:
    """A readable name for a User-Agent: "Firefox sur Linux", "Coffre Desktop", or unknown."""
    if not user_agent:
        return _l("Appareil inconnu")
    if re.search(r"coffre", user_agent, re.IGNORECASE):
        return _l("Application Coffre")
    browser = next((name for marker, name in _BROWSERS if marker in user_agent), None)
    system = next((name for marker, name in _SYSTEMS if marker in user_agent), None)
    if browser and system:
        return _l("%(browser)s sur %(system)s", browser=browser, system=system)
    if browser or system:
        return browser or system
    return _l("Appareil inconnu")
