"""Rendering helpers shared by every processor: the text the bot sees is built here.

Sender-controlled strings (MIME type, file name) pass through `sanitize_*` before they
enter the bot's text: no control characters, no path parts, bounded length.
"""

from __future__ import annotations

import re
import unicodedata

_MIME = re.compile(r"^[a-z0-9][a-z0-9!#$&^_.+-]{0,63}/[a-z0-9][a-z0-9!#$&^_.+-]{0,63}$")


def _printable(text: str) -> str:
    """Drops control, format and separator characters other than a plain space."""
    return "".join(ch for ch in text if ch == " " or unicodedata.category(ch)[0] not in {"C", "Z"})


def sanitize_mime(mime: str) -> str:
    """A MIME type safe to show: `type/subtype` in lower case, else `unknown type`."""
    base = mime.split(";", 1)[0].strip().lower()
    return base if _MIME.match(base) else "unknown type"


def sanitize_file_name(name: str | None, max_chars: int = 120) -> str:
    """The last path component, printable characters only, bounded; "" when nothing is left."""
    if not name:
        return ""
    last = re.split(r"[\\/]", name)[-1]
    cleaned = " ".join(_printable(last).split()).strip(" .")
    if len(cleaned) > max_chars:
        stem, dot, ext = cleaned.rpartition(".")
        if dot and 0 < len(ext) <= 10:
            cleaned = stem[: max_chars - len(ext) - 2] + "…." + ext
        else:
            cleaned = cleaned[: max_chars - 1] + "…"
    return cleaned


def format_duration(seconds: float) -> str:
    """`0:07`, `3:05`, `1:02:03`."""
    total = max(0, round(seconds))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def bounded(text: str, max_chars: int) -> str:
    """`text` cut to `max_chars` with a marker saying how much was left out."""
    if len(text) <= max_chars:
        return text
    left_out = len(text) - max_chars
    return f"{text[:max_chars].rstrip()} […{left_out:,} more characters not shown]"
