"""What the document readers share: the result, the failures and the output budget."""

from __future__ import annotations

import re
from dataclasses import dataclass

from services.media_svc.processors.base import ProcessingFailure

# Control characters other than tab and newline (str.split handles the whitespace).
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


@dataclass(frozen=True, slots=True)
class Extracted:
    """What a document holds: its format label, page count when known, and its text,
    already bounded (with the marker for what was left out)."""

    format: str
    pages: int | None
    text: str
    # What `pages` counts: "page", or "slide" for decks.
    unit: str = "page"
    # PDF pages without a text layer read by OCR, and those left unread (page budget).
    ocr_pages: int = 0
    unread_scans: int = 0


def corrupt(detail: str) -> ProcessingFailure:
    return ProcessingFailure(
        reason="corrupt", marker="[Corrupted document: could not be decoded]", detail=detail
    )


def too_large(what: str, detail: str) -> ProcessingFailure:
    return ProcessingFailure(
        reason="too_large", marker=f"[Document not processed: too large ({what})]", detail=detail
    )


def unsupported(what: str, detail: str | None = None) -> ProcessingFailure:
    return ProcessingFailure(
        reason="unsupported", marker=f"[Unsupported document: {what}]", detail=detail
    )


class Budget:
    """Collects text up to `max_chars`, then only counts what is left out."""

    def __init__(self, max_chars: int) -> None:
        self.max_chars = max_chars
        self.parts: list[str] = []
        self.used = 0
        self.left_out = 0

    @property
    def full(self) -> bool:
        return self.used >= self.max_chars

    def add(self, text: str) -> None:
        text = _tidy(text)
        if not text:
            return
        if self.parts:
            text = "\n" + text
        room = self.max_chars - self.used
        if len(text) > room:
            self.left_out += len(text) - max(room, 0)
            text = text[: max(room, 0)]
        if text:
            self.parts.append(text)
            self.used += len(text)

    def render(self, pages_left: int = 0, approximate: bool = False) -> str:
        text = "".join(self.parts).rstrip()
        notes = []
        if self.left_out:
            about = "about " if approximate else ""
            notes.append(f"{about}{self.left_out:,} more characters")
        if pages_left:
            notes.append(f"{pages_left:,} more page{'s' if pages_left != 1 else ''}")
        if notes:
            text += f" […{' and '.join(notes)} not shown]"
        return text


def _tidy(text: str) -> str:
    """Spaces collapsed within lines, no blank runs, no control characters."""
    lines: list[str] = []
    for raw in _CONTROL.sub("", text.replace("\r\n", "\n").replace("\r", "\n")).split("\n"):
        line = " ".join(raw.split())
        if line or (lines and lines[-1]):
            lines.append(line)
    return "\n".join(lines).strip()
