"""Text out of documents under limits: PDF (`pdf_text`, scanned pages OCR'd), DOCX
(here, python-docx), XLSX, PPTX, ODT, ODS, ODP, EPUB (`office_documents`), RTF and HTML
(`markup_text`) and plain text (`plain_text`). Binary formats are chosen by the file's
first bytes (a zip by its parts); the sender's MIME type and name decide only between
text formats. Every limit is checked before the expensive step it protects; every zip
passes the same defences (`zip_parts`).

The libraries are imported here; only worker processes import this module.
"""

from __future__ import annotations

import warnings
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

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
from services.media_svc.engines.markup_text import html_text, rtf_text
from services.media_svc.engines.office_documents import extract_office, office_format
from services.media_svc.engines.pdf_text import PdfOcr, pdf_text
from services.media_svc.engines.plain_text import decode_text, plain_text
from services.media_svc.engines.zip_parts import PartTooLargeError, check_archive
from services.media_svc.processors.base import ProcessingFailure
from services.media_svc.processors.contract import ProcessorLimits
from services.media_svc.processors.text import sanitize_mime

if TYPE_CHECKING:
    from services.media_svc.engines.ocr import OcrEngine

__all__ = ["Extracted", "corrupt", "extract"]

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
# Declared types and extensions of the binary formats read here.
BINARY_FORMATS = {
    "application/pdf": "PDF",
    DOCX_MIME: "DOCX",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": "XLSX",
    "application/vnd.openxmlformats-officedocument.presentationml.presentation": "PPTX",
    "application/vnd.oasis.opendocument.text": "ODT",
    "application/vnd.oasis.opendocument.spreadsheet": "ODS",
    "application/vnd.oasis.opendocument.presentation": "ODP",
    "application/epub+zip": "EPUB",
    "application/rtf": "RTF",
    "text/rtf": "RTF",
    "text/html": "HTML",
    "application/xhtml+xml": "HTML",
}
BINARY_EXTENSIONS = {
    "pdf": "PDF",
    "docx": "DOCX",
    "xlsx": "XLSX",
    "pptx": "PPTX",
    "odt": "ODT",
    "ods": "ODS",
    "odp": "ODP",
    "epub": "EPUB",
    "rtf": "RTF",
    "html": "HTML",
    "htm": "HTML",
    "xhtml": "HTML",
}
# RTF and HTML read at most this much (their text is usually a small part of it).
MARKUP_READ_BYTES = 8 * 1024 * 1024
_ZIP_FORMATS = frozenset({"DOCX", "XLSX", "PPTX", "ODT", "ODS", "ODP", "EPUB"})


def extract(
    path: Path,
    mime: str,
    file_name: str,
    limits: ProcessorLimits,
    ocr: Callable[[], OcrEngine] | None = None,
    ocr_pages: int = 0,
) -> Extracted | ProcessingFailure:
    """Chooses the reader (see the module docstring), then extracts under `limits`;
    `ocr` gives the OCR engine for up to `ocr_pages` PDF pages without a text layer."""
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
                return pdf_text(path, limits, PdfOcr(ocr, ocr_pages, limits.max_pixels))
            if head.startswith(b"PK\x03\x04"):
                return _zip_document(path, mime, limits)
            if head.startswith(b"{\\rtf"):
                return _markup(path, size, "RTF", limits)
            if declared in _ZIP_FORMATS or declared == "PDF":
                return corrupt(f"declared {declared}, content starts with {head!r}")
            if declared == "HTML" or _looks_like_html(path):
                return _markup(path, size, "HTML", limits)
            if declared is None or declared == "RTF":
                return unsupported(sanitize_mime(mime) if mime else "unknown type")
            return plain_text(path, size, declared, limits)
    except MemoryError:
        return too_large("out of memory", "MemoryError while extracting")


def _markup(
    path: Path, size: int, label: str, limits: ProcessorLimits
) -> Extracted | ProcessingFailure:
    """RTF or HTML from at most MARKUP_READ_BYTES (a longer file is cut, and the
    characters left out are estimated in the marker)."""
    with path.open("rb") as handle:
        data = handle.read(min(MARKUP_READ_BYTES, limits.max_decompressed_bytes))
    cut = size > len(data)
    if label == "RTF":
        text = rtf_text(data)
    else:
        decoded = decode_text(data, cut)
        if decoded is None:
            return corrupt("HTML in no known text encoding")
        text = html_text(decoded)
    budget = Budget(limits.max_output_chars)
    budget.add(text)
    if cut:
        budget.left_out += round((size - len(data)) * len(text) / max(len(data), 1))
    return Extracted(label, None, budget.render(approximate=cut))


def _looks_like_html(path: Path) -> bool:
    start = _start(path).lstrip().lower()
    return start.startswith((b"<!doctype html", b"<html"))


def _start(path: Path) -> bytes:
    # PDF readers accept up to 1 KiB of junk before the header.
    with path.open("rb") as handle:
        return handle.read(1024)


def _declared_format(mime: str, file_name: str) -> str | None:
    if mime in BINARY_FORMATS:
        return BINARY_FORMATS[mime]
    if mime in TEXT_FORMATS:
        return TEXT_FORMATS[mime]
    extension = file_name.rpartition(".")[2].lower() if "." in file_name else ""
    if extension in BINARY_EXTENSIONS:
        return BINARY_EXTENSIONS[extension]
    if extension in TEXT_EXTENSIONS:
        return TEXT_EXTENSIONS[extension]
    if mime.startswith("text/"):
        return "text"
    return None


# Zip-based documents


def _zip_document(path: Path, mime: str, limits: ProcessorLimits) -> Extracted | ProcessingFailure:
    try:
        with zipfile.ZipFile(path) as archive:
            refused = check_archive(archive.infolist(), limits)
            if refused is not None:
                return refused
            label = office_format(archive)
            if label is None:
                # Another zip-based format (an archive, a Keynote file): say which.
                shown = sanitize_mime(mime) if mime else "unknown type"
                return unsupported(shown, "zip of no known document format")
            if label != "DOCX":
                return extract_office(archive, label, limits.max_output_chars)
        return _docx(path, limits)
    except MemoryError:
        raise
    except PartTooLargeError as exc:
        return too_large("a part larger than it declares", str(exc))
    except Exception as exc:  # zip, XML, docx errors: hostile input
        return corrupt(f"{type(exc).__name__}: {exc}")


def _docx(path: Path, limits: ProcessorLimits) -> Extracted:
    document = docx.Document(str(path))
    budget = Budget(limits.max_output_chars)
    # python-docx has parsed the whole body already (bounded by the archive checks),
    # so the blocks past the budget are cheap to count for the marker.
    for block in _docx_blocks(document):
        budget.add(block)
    # No page count: docProps/app.xml holds whatever the writing program left there
    # (python-docx keeps its template's "1"); counting means laying the text out.
    return Extracted("DOCX", None, budget.render())


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
