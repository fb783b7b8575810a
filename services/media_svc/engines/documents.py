"""Text out of documents under limits: PDF (pypdf), DOCX (python-docx) and plain text
(charset detection by charset-normalizer). Every limit is checked before the expensive
step it protects:

- PDF: the page count the document declares (`/Root /Pages /Count`) before any page is
  parsed, then a walk of the page tree that stops after `max_pages` pages (a document
  can declare 3 pages and hold 100,000), and text page by page until the output
  budget is spent. `len(reader.pages)` on a 100k-page file took 9 s and 448 MB; the
  declared count 0.24 s.
- DOCX: the zip directory before parsing: total uncompressed size and each entry's
  compression ratio. Both are needed: 1 GiB of spaces in 1 MB is caught by the total,
  100 MB of empty paragraphs (183 KB on disk, 45 s and 5.4 GB in python-docx) only by
  the ratio (ordinary entries compress ~32:1, these 685-1028:1).
- Text: at most `TEXT_READ_BYTES` are read.

The libraries are imported here; only worker processes import this module.
"""

from __future__ import annotations

import re
import warnings
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import charset_normalizer
import docx
from docx.table import Table
from docx.text.paragraph import Paragraph
from pypdf import PdfReader
from pypdf.errors import DependencyError, FileNotDecryptedError, PyPdfError
from pypdf.generic import DictionaryObject

from services.media_svc.processors.base import ProcessingFailure
from services.media_svc.processors.contract import ProcessorLimits
from services.media_svc.processors.text import sanitize_mime

# Bytes of a plain-text file read at most (also bounded by max_decompressed_bytes).
TEXT_READ_BYTES = 1024 * 1024
# Archive entries smaller than this are not held to the compression-ratio cap: a tiny
# entry cannot be a bomb, and small repetitive XML parts legitimately compress well.
RATIO_FLOOR_BYTES = 1024 * 1024
# Entries in a DOCX zip; Word writes a few dozen.
MAX_ZIP_ENTRIES = 5000
# Largest XML part python-docx may parse. lxml holds an element tree many times the
# size of its XML (100 MB of empty paragraphs took 5.4 GB), and a 500-page book's
# document.xml is ~10 MB, so ordinary-looking XML under the total and ratio caps is
# bounded here too.
MAX_XML_PART_BYTES = 32 * 1024 * 1024

TEXT_FORMATS = {
    "text/plain": "text",
    "text/csv": "CSV",
    "text/tab-separated-values": "TSV",
    "application/json": "JSON",
    "text/json": "JSON",
    "text/markdown": "Markdown",
    "text/x-markdown": "Markdown",
}
TEXT_EXTENSIONS = {
    "txt": "text",
    "text": "text",
    "log": "text",
    "csv": "CSV",
    "tsv": "TSV",
    "json": "JSON",
    "md": "Markdown",
    "markdown": "Markdown",
}
# Control characters other than tab and newline (str.split handles the whitespace).
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
# Tie-break order for charset detection, most used first.
_COMMON_ENCODINGS = ("utf_8", "cp1252", "latin_1", "iso8859_15", "cp1251", "cp1250", "gb18030")
DOCX_MIME = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"


@dataclass(frozen=True, slots=True)
class Extracted:
    """What a document holds: its format label, page count when known, and its text,
    already bounded (with the marker for what was left out)."""

    format: str
    pages: int | None
    text: str


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


def extract(
    path: Path, mime: str, file_name: str, limits: ProcessorLimits
) -> Extracted | ProcessingFailure:
    """Chooses the reader by the file's first bytes (the sender's MIME type and name
    only decide between text formats), then extracts under `limits`."""
    size = path.stat().st_size
    if size > limits.max_file_bytes:
        return too_large(f"{size:,} bytes", f"{size} bytes > {limits.max_file_bytes}")
    with path.open("rb") as handle:
        head = handle.read(8)
    declared = _declared_format(mime, file_name)
    try:
        with warnings.catch_warnings():
            # Hostile files make the parsers warn; the outcome says what matters.
            warnings.simplefilter("ignore")
            if head.startswith(b"%PDF-") or (declared == "PDF" and b"%PDF-" in _start(path)):
                return _pdf(path, limits)
            if head.startswith(b"PK\x03\x04"):
                return _docx(path, mime, limits)
            if declared in {"PDF", "DOCX"}:
                return corrupt(f"declared {declared}, content starts with {head!r}")
            if declared is None:
                return unsupported(sanitize_mime(mime) if mime else "unknown type")
            return _text(path, size, declared, limits)
    except MemoryError:
        return too_large("out of memory", "MemoryError while extracting")


def _start(path: Path) -> bytes:
    # PDF readers accept up to 1 KiB of junk before the header.
    with path.open("rb") as handle:
        return handle.read(1024)


def _declared_format(mime: str, file_name: str) -> str | None:
    if mime == "application/pdf":
        return "PDF"
    if mime == DOCX_MIME:
        return "DOCX"
    if mime in TEXT_FORMATS:
        return TEXT_FORMATS[mime]
    extension = file_name.rpartition(".")[2].lower() if "." in file_name else ""
    if extension == "pdf":
        return "PDF"
    if extension == "docx":
        return "DOCX"
    if extension in TEXT_EXTENSIONS:
        return TEXT_EXTENSIONS[extension]
    if mime.startswith("text/"):
        return "text"
    return None


class _Budget:
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


# PDF


def _pdf(path: Path, limits: ProcessorLimits) -> Extracted | ProcessingFailure:
    try:
        reader = PdfReader(path, strict=False)
        if reader.is_encrypted:
            try:
                decrypted = reader.decrypt("")
            except (DependencyError, NotImplementedError, PyPdfError) as exc:
                return unsupported("encrypted PDF", f"{type(exc).__name__}: {exc}")
            if not decrypted:
                return unsupported("encrypted PDF", "a password is needed")
        declared = _declared_pages(reader)
        if declared is None:
            return corrupt("PDF without a readable /Root /Pages /Count")
        if declared > limits.max_pages:
            return too_large(
                f"{declared:,} pages", f"declares {declared} pages > {limits.max_pages}"
            )
        pages = _count_pages(reader, limits.max_pages)
        if pages is None:
            return too_large(
                f"more than {limits.max_pages:,} pages",
                f"declares {declared} pages, page tree holds more than {limits.max_pages}",
            )
        budget = _Budget(limits.max_output_chars)
        read = 0
        failed = 0
        for page in reader.pages:
            if budget.full:
                break
            read += 1
            try:
                budget.add(page.extract_text() or "")
            except (FileNotDecryptedError, DependencyError) as exc:
                return unsupported("encrypted PDF", f"{type(exc).__name__}: {exc}")
            except Exception:  # one malformed page must not lose the rest
                failed += 1
        if failed and failed == read:
            return corrupt(f"text of all {failed} pages failed to parse")
        return Extracted("PDF", pages, budget.render(pages_left=pages - read))
    except MemoryError:
        raise
    except Exception as exc:  # pypdf raises anything on hostile input
        return corrupt(f"{type(exc).__name__}: {exc}")


def _declared_pages(reader: PdfReader) -> int | None:
    pages = _resolve(_resolve(reader.trailer.get("/Root")), "/Pages")
    count = pages.get("/Count") if isinstance(pages, DictionaryObject) else None
    if isinstance(count, bool) or not isinstance(count, int) or count < 0:
        return None
    return int(count)


def _resolve(node: Any, key: str | None = None) -> Any:
    if key is not None:
        node = node.get(key) if isinstance(node, DictionaryObject) else None
    return node.get_object() if hasattr(node, "get_object") else node


def _count_pages(reader: PdfReader, max_pages: int) -> int | None:
    """Pages in the page tree, walked without building page objects; None as soon as
    there are more than `max_pages` or the walk needs more nodes than a tree of that
    many pages could have (cycles, shared subtrees)."""
    root = _resolve(_resolve(reader.trailer.get("/Root")), "/Pages")
    stack: list[Any] = [root]
    pages = 0
    visits = 0
    max_visits = 2 * max_pages + 64
    while stack:
        node = _resolve(stack.pop())
        visits += 1
        if visits > max_visits:
            return None
        kids = node.get("/Kids") if isinstance(node, DictionaryObject) else None
        if kids is None:
            pages += 1
            if pages > max_pages:
                return None
            continue
        kids = _resolve(kids)
        if isinstance(kids, list):
            if len(kids) > max_visits:
                return None
            stack.extend(reversed(kids))
    return pages


# DOCX


def _docx(path: Path, mime: str, limits: ProcessorLimits) -> Extracted | ProcessingFailure:
    try:
        with zipfile.ZipFile(path) as archive:
            refused = _check_archive(archive.infolist(), limits)
            if refused is not None:
                return refused
            names = set(archive.namelist())
            if "word/document.xml" not in names:
                # Another zip-based format (XLSX, PPTX, ODT, an archive): say which.
                shown = sanitize_mime(mime) if mime else "unknown type"
                return unsupported(shown, "zip without word/document.xml")
        document = docx.Document(str(path))
        budget = _Budget(limits.max_output_chars)
        # python-docx has parsed the whole body already (bounded by the archive checks),
        # so the blocks past the budget are cheap to count for the marker.
        for block in _docx_blocks(document):
            budget.add(block)
        # No page count: docProps/app.xml holds whatever the writing program left there
        # (python-docx keeps its template's "1"); counting means laying the text out.
        return Extracted("DOCX", None, budget.render())
    except MemoryError:
        raise
    except Exception as exc:  # zip, XML, docx errors: hostile input
        return corrupt(f"{type(exc).__name__}: {exc}")


def _check_archive(
    entries: list[zipfile.ZipInfo], limits: ProcessorLimits
) -> ProcessingFailure | None:
    if len(entries) > MAX_ZIP_ENTRIES:
        return too_large(f"{len(entries):,} archive entries", f"> {MAX_ZIP_ENTRIES} entries")
    total = sum(entry.file_size for entry in entries)
    if total > limits.max_decompressed_bytes:
        return too_large(
            f"{total:,} bytes uncompressed",
            f"{total} uncompressed bytes > {limits.max_decompressed_bytes}",
        )
    for entry in entries:
        ratio = entry.file_size / max(entry.compress_size, 1)
        if entry.file_size >= RATIO_FLOOR_BYTES and ratio > limits.max_compression_ratio:
            return too_large(
                f"compressed {ratio:,.0f}:1",
                f"{entry.filename!r}: {entry.file_size} bytes from {entry.compress_size}"
                f" (ratio {ratio:.0f} > {limits.max_compression_ratio:g})",
            )
        if entry.filename.endswith((".xml", ".rels")) and entry.file_size > MAX_XML_PART_BYTES:
            return too_large(
                f"{entry.file_size:,} bytes of XML",
                f"{entry.filename!r}: {entry.file_size} bytes > {MAX_XML_PART_BYTES}",
            )
    return None


def _docx_blocks(document: Any) -> Iterator[str]:
    """Paragraphs and tables in body order; a table row becomes `a | b | c`."""
    for block in document.iter_inner_content():
        if isinstance(block, Paragraph):
            yield block.text
        elif isinstance(block, Table):
            for row in block.rows:
                cells: list[str] = []
                for cell in row.cells:
                    text = " ".join(cell.text.split())
                    if text and (not cells or cells[-1] != text):  # merged cells repeat
                        cells.append(text)
                yield " | ".join(cells)


# Plain text


def _text(
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
    budget = _Budget(limits.max_output_chars)
    budget.add(text)
    unread = size - len(data)
    if unread > 0:
        # Characters in the unread part, estimated from the part that was read.
        budget.left_out += round(unread * len(text) / len(data))
    return Extracted(label, None, budget.render(approximate=unread > 0))


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
