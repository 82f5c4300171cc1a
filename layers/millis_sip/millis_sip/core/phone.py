"""Phone numbers in one canonical form, E.164 (``+14155550100``), whatever spelling a phone system used
(docs/router.md, "Numbers as phone systems write them").

Every edge reads the caller's and the dialed number through ``canonical_number`` before the router sees them, so
number routes, claims, hourly caps, the lookup index and the logs all meet one key per number. Accepted:

- with or without ``+`` (Plivo and Vonage write ``14155550100``), or with the international prefix ``00``;
- a ``tel:`` URI, or the user part of a ``sip:``/``sips:`` URI (``sip:+14155550100@pbx.example;user=phone``),
  percent-encoding decoded, URI parameters (``;...``) and headers (``?...``) dropped;
- visual separators (RFC 3966: ``-``, ``.``, ``(``, ``)``, spaces).

What is left must be ASCII digits, the first not ``0``: 2 to 15 after ``+`` or ``00``, 7 to 15 without either (a
short bare string of digits is an extension, not a number). Anything else is **no number** (``None``): anonymous,
restricted or withheld callers, a carrier's placeholder for them, SIP users (``sip:alice@example.com``), text.
Callers without a number share one key of their own wherever a key is needed (``NO_NUMBER_KEY``), never one per
spelling.
"""

from __future__ import annotations

import re
from urllib.parse import unquote

MAX_RAW_LENGTH = 256  # longer than any number written any way: not a number
NO_NUMBER_KEY = "no-number"  # where a key is needed for a caller or a dialed number that is not a number
_SEPARATORS = str.maketrans("", "", " -.()\t")
_DIGITS = re.compile(r"[1-9][0-9]{1,14}\Z")  # ASCII only: "\d" would take any script's digits
_MIN_BARE_DIGITS = 7


def canonical_number(raw: object, *, placeholders: frozenset[str] = frozenset()) -> str | None:
    """``raw`` as an E.164 number, or None when it is not one. ``placeholders``: E.164 numbers a phone system
    puts in place of a withheld caller ID (Twilio's ``+266696687``, "ANONYMOUS" on a keypad), read as none."""
    if not isinstance(raw, str) or not raw or len(raw) > MAX_RAW_LENGTH:
        return None
    text = raw.strip(" ")  # not "\n": a line break is not how anyone writes a number
    scheme, colon, rest = text.partition(":")
    if colon:
        scheme = scheme.lower()
        if scheme in ("sip", "sips"):
            text = rest.partition("@")[0] if "@" in rest else rest
        elif scheme == "tel":
            text = rest
        else:
            return None
    text = unquote(text.partition("?")[0].partition(";")[0]).translate(_SEPARATORS)
    if text.startswith("+"):
        digits, bare = text[1:], False
    elif text.startswith("00"):
        digits, bare = text[2:], False
    else:
        digits, bare = text, True
    if not _DIGITS.match(digits) or (bare and len(digits) < _MIN_BARE_DIGITS):
        return None
    number = "+" + digits
    return None if number in placeholders else number


def number_key(number: str | None) -> str:
    """The key a caller or dialed number counts under: the number itself, or ``NO_NUMBER_KEY``."""
    return number if number is not None else NO_NUMBER_KEY
