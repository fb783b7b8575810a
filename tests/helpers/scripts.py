"""Which writing system a text is in, by Unicode block: a transcript labelled Hindi must
be in Devanagari, not in the Urdu (Arabic) script Whisper drifts into."""

from __future__ import annotations

from collections import Counter

# (first, last, name) of the blocks the tests tell apart.
_BLOCKS = (
    (0x0041, 0x024F, "Latin"),
    (0x0400, 0x04FF, "Cyrillic"),
    (0x0590, 0x05FF, "Hebrew"),
    (0x0600, 0x06FF, "Arabic"),
    (0x0750, 0x077F, "Arabic"),
    (0xFB50, 0xFDFF, "Arabic"),
    (0xFE70, 0xFEFF, "Arabic"),
    (0x0900, 0x097F, "Devanagari"),
    (0x0980, 0x09FF, "Bengali"),
    (0x0A00, 0x0A7F, "Gurmukhi"),
    (0x0E00, 0x0E7F, "Thai"),
    (0x4E00, 0x9FFF, "Han"),
)


def script_counts(text: str) -> Counter[str]:
    """Letters (and marks) of `text` per script; digits, spaces and punctuation are not
    counted (Devanagari's danda is, being in its block)."""
    counts: Counter[str] = Counter()
    for char in text:
        code = ord(char)
        if not (char.isalpha() or 0x0900 <= code <= 0x0A7F):
            continue
        for first, last, name in _BLOCKS:
            if first <= code <= last:
                counts[name] += 1
                break
        else:
            counts["other"] += 1
    return counts


def unicode_script(text: str) -> str | None:
    """The script most of the letters are in; None for a text without letters."""
    counts = script_counts(text)
    return counts.most_common(1)[0][0] if counts else None
