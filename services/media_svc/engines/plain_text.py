"""Text out of a plain-text file (CSV, JSON, Markdown, …) under limits: at most
`TEXT_READ_BYTES` are read, and the charset is detected (charset-normalizer) when the
bytes are not UTF-8."""

from __future__ import annotations

from pathlib import Path

import charset_normalizer

from services.media_svc.engines.extracted import Budget, Extracted, corrupt
from services.media_svc.processors.base import ProcessingFailure
from services.media_svc.processors.contract import ProcessorLimits

# Bytes of a plain-text file read at most (also bounded by max_decompressed_bytes).
TEXT_READ_BYTES = 1024 * 1024
# Tie-break order for charset detection, most used first.
_COMMON_ENCODINGS = ("utf_8", "cp1252", "latin_1", "iso8859_15", "cp1251", "cp1250", "gb18030")


def plain_text(
    path: Path, size: int, label: str, limits: ProcessorLimits
) -> Extracted | ProcessingFailure:
    limit = min(TEXT_READ_BYTES, limits.max_decompressed_bytes)
    with path.open("rb") as handle:
        data = handle.read(limit)
    if not data:
        return Extracted(label, None, "")
    text = _decode(data, cut=size > len(data))
    if text is None:
        return corrupt(f"{label} file is not text in any known encoding")
    budget = Budget(limits.max_output_chars)
    budget.add(text)
    unread = size - len(data)
    if unread > 0:
        # Characters in the unread part, estimated from the part that was read.
        budget.left_out += round(unread * len(text) / len(data))
    return Extracted(label, None, budget.render(approximate=unread > 0))


def decode_text(data: bytes, cut: bool = False) -> str | None:
    """`data` as text (see `_decode`); None for binary data."""
    return _decode(data, cut)


def _decode(data: bytes, cut: bool) -> str | None:
    """UTF-8 when it is (the common case, and cheap); otherwise the encoding
    charset-normalizer finds most likely; None for binary data."""
    candidate = data
    if cut:
        # A read that stopped mid-character must not look like invalid UTF-8.
        for trim in range(4):
            try:
                return candidate[: len(candidate) - trim].decode("utf-8")
            except UnicodeDecodeError:
                continue
    else:
        try:
            return candidate.decode("utf-8-sig")
        except UnicodeDecodeError:
            pass
    matches = charset_normalizer.from_bytes(data)
    best = matches.best()
    if best is None:
        return None
    # Short texts often fit several legacy code pages equally well (Latin-1 text reads
    # as cp1250 with ñ turned into ń); among equals, take the most widely used one.
    tied = {
        match.encoding: match
        for match in matches
        if match.chaos == best.chaos and match.coherence == best.coherence
    }
    for encoding in _COMMON_ENCODINGS:
        if encoding in tied:
            return str(tied[encoding])
    return str(best)
