"""Free text a person types that is kept in the record (a level change's reason, an approval's):
readable UTF-8, no control characters, a bounded length. What a terminal or a report shows later
must be what was meant (no escape sequences, no invisible line breaks)."""

from __future__ import annotations

import unicodedata

from station.errors import StationError

MAX_REASON = 1000


def readable(text: str, what: str, *, max_len: int = MAX_REASON) -> str:
    """`text` stripped, or StationError saying what was expected."""
    text = text.strip()
    bad = [f"U+{ord(c):04X}" for c in text if unicodedata.category(c) in ("Cc", "Cs") and c != "\t"]
    if bad:
        raise StationError(
            f"{what} has control or undecodable characters ({', '.join(bad[:5])}): expected "
            "readable text on one line"
        )
    if len(text) > max_len:
        raise StationError(f"{what} is {len(text)} characters long: expected at most {max_len}")
    return text
