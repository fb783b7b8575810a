"""Text out of documents under limits: PDF (`pdf_text`), DOCX (here, python-docx) and
plain text (`plain_text`). The reader is chosen by the file's first bytes; every limit
is checked before the expensive step it protects.

DOCX: the zip directory is checked before parsing: total uncompressed size and each
entry's compression ratio. Both are needed: 1 GiB of spaces in 1 MB is caught by the
total, 100 MB of empty paragraphs (183 KB on disk, 45 s and 5.4 GB in python-docx) only
by the ratio (ordinary entries compress ~32:1, these 685-1028:1).

The libraries are imported here; only worker processes import this module.
"""

from __future__ import annotations

import warnings
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docx
from docx.table import Table
from docx.text.paragraph import Paragraph

from services.media_svc.engines.extracted import (
    Budget,
    Extracted,
    corrupt,
    too_large,
    unsupported,
)
from services.media_svc.engines.pdf_text import pdf_text
from services.media_svc.engines.plain_text import plain_text
from services.media_svc.processors.base import ProcessingFailure
from services.media_svc.processors.contract import ProcessorLimits
from services.media_svc.processors.text import sanitize_mime

__all__ = ["Extracted", "corrupt", "extract"]

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
DOCX_MIME = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"


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
                return pdf_text(path, limits)
            if head.startswith(b"PK\x03\x04"):
                return _docx(path, mime, limits)
            if declared in {"PDF", "DOCX"}:
                return corrupt(f"declared {declared}, content starts with {head!r}")
            if declared is None:
                return unsupported(sanitize_mime(mime) if mime else "unknown type")
            return plain_text(path, size, declared, limits)
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
        budget = Budget(limits.max_output_chars)
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
