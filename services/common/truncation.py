"""Cutting a text the bot sees to a bound, and saying so: one rule for the queue's
content and for the typed fields that repeat it (an edit's new text)."""

from __future__ import annotations


def truncate_marked(content: str, limit: int) -> str:
    """`content` cut to at most `limit` characters, saying so at its end.

    The bot must know it sees only part of a message (a cut-off question reads like a
    complete one). The marker counts towards the limit; below a few dozen characters
    there is no room for it and the text is cut bare.
    """
    if len(content) <= limit:
        return content

    def marker(kept: int) -> str:
        return f" … [message truncated: {len(content) - kept:,} more characters]"

    # Keeping less only lengthens the marker, so this settles (on kept + marker == limit).
    kept = limit
    while kept >= 0 and limit - len(marker(kept)) < kept:
        kept = limit - len(marker(kept))
    if kept < len(marker(kept)):
        return content[:limit]
    return content[:kept] + marker(kept)
