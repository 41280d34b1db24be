"""Text from the ledger as a terminal or a text log shows it: safe to print.

Pause reasons, errors and results come from job code and operators. Printed raw,
a `\\x1b[2J` would clear the screen and a `\\r\\n` would forge a line, so every
human-facing output escapes control characters (and the invisible bidi controls
that reorder a line) as Python would write them in a string.
"""

from __future__ import annotations

import unicodedata

# Characters that move the cursor or reorder text without being visible.
_BIDI = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f")


def printable(text: str) -> str:
    """`text` with control characters escaped (`\\n`, `\\x1b`, `\\u202e`)."""
    if text.isprintable():
        return text
    return "".join(_escaped(char) for char in text)


def _escaped(char: str) -> str:
    if char == " " or not (unicodedata.category(char) in ("Cc", "Cf", "Zl", "Zp") or char in _BIDI):
        return char
    return char.encode("unicode_escape").decode("ascii")


def cut(text: str, limit: int) -> str:
    """`text`, or its first `limit` characters and how many more there were."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}… ({len(text) - limit} more characters)"
