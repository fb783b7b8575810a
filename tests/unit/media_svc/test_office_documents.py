"""The document formats people send besides PDF and DOCX, made here with expected
words: XLSX (openpyxl), PPTX, ODT, ODS, ODP and EPUB (zips of their XML parts), RTF and
HTML text, and a scanned PDF (text drawn by Pillow, saved as an image-only PDF). Bombs of
each spreadsheet kind end bounded and quickly."""

from __future__ import annotations

import io
import os
import time
import zipfile
from pathlib import Path
from typing import Any

import pytest
from PIL import Image, ImageDraw, ImageFont

from services.media_svc.processors.base import (
    ProcessingFailure,
    ProcessingProgress,
    ProcessingSuccess,
)
from services.media_svc.processors.contract import ProcessorInput
from services.media_svc.processors.document import DocumentEngine, DocumentProcessor
from tests.helpers.office_inputs import (
    epub_bytes,
    odf_bytes,
    ods_row,
    pptx_bytes,
    xlsx_bytes,
)

XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
PPTX = "application/vnd.openxmlformats-officedocument.presentationml.presentation"
# How long a bounded hostile file may take on a loaded two-core machine.
HOSTILE_SECONDS = 10.0


@pytest.fixture(scope="module")
def engine() -> DocumentEngine:
    return DocumentProcessor.load_engine(DocumentProcessor.parse_options({}))


def _process(
    engine: DocumentEngine,
    path: Path,
    mime: str,
    file_name: str = "",
    options: dict[str, Any] | None = None,
) -> ProcessingSuccess | ProcessingFailure:
    parsed = DocumentProcessor.parse_options(options or {})
    item = ProcessorInput(
        media_kind="MEDIA_KIND_DOCUMENT",
        mime=mime,
        path=path,
        file_name=file_name,
        size=path.stat().st_size,
        limits=parsed.limits,
    )
    outcome = DocumentProcessor.process(engine, parsed, item)
    assert not isinstance(outcome, ProcessingProgress), "documents are never chunked"
    return outcome


def _text(outcome: object) -> str:
    assert isinstance(outcome, ProcessingSuccess), outcome
    return outcome.text


def _write(tmp_path: Path, name: str, content: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(content)
    return path


def test_xlsx_sheets_become_rows(engine: DocumentEngine, tmp_path: Path) -> None:
    data = xlsx_bytes(
        {
            "Prices": [
                ["Item", "Price", "In stock"],
                ["Rice 5kg", 12.5, True],
                ["Beans", 3, False],
            ],
            "Contacts": [["Ana", "+55 11 91234-5678"]],
        }
    )
    path = _write(tmp_path, "prices.xlsx", data)
    assert _text(_process(engine, path, XLSX, "prices.xlsx")) == (
        "[Document: prices.xlsx, XLSX] Sheet: Prices\n"
        "Item | Price | In stock\nRice 5kg | 12.5 | TRUE\nBeans | 3 | FALSE\n"
        "Sheet: Contacts\nAna | +55 11 91234-5678"
    )
    # Sent untyped, it is still recognised by its parts.
    assert _text(_process(engine, path, "application/octet-stream")).startswith(
        "[Document: XLSX] Sheet: Prices"
    )


def test_pptx_slides_in_deck_order_with_titles(engine: DocumentEngine, tmp_path: Path) -> None:
    data = pptx_bytes(
        [
            ("Q3 results", ["Revenue up 12%", "New store in Recife"]),
            ("Next steps", ["Hire two drivers"]),
        ]
    )
    path = _write(tmp_path, "deck.pptx", data)
    assert _text(_process(engine, path, PPTX, "deck.pptx")) == (
        "[Document: deck.pptx, PPTX, 2 slides] Slide 1: Q3 results\nRevenue up 12%\n"
        "New store in Recife\nSlide 2: Next steps\nHire two drivers"
    )


def test_odt_paragraphs_headings_lists_and_tables(engine: DocumentEngine, tmp_path: Path) -> None:
    body = (
        "<text:h>Menu</text:h><text:p>Open<text:s/>daily <text:span>from 9</text:span></text:p>"
        "<text:list><text:list-item><text:p>Feijoada</text:p></text:list-item></text:list>"
        "<table:table><table:table-row>"
        "<table:table-cell><text:p>Pão</text:p></table:table-cell>"
        "<table:table-cell><text:p>R$ 2</text:p></table:table-cell>"
        "</table:table-row></table:table>"
    )
    path = _write(tmp_path, "menu.odt", odf_bytes("text", body))
    assert _text(_process(engine, path, "application/vnd.oasis.opendocument.text", "menu.odt")) == (
        "[Document: menu.odt, ODT] Menu\nOpen daily from 9\nFeijoada\nPão | R$ 2"
    )


def test_ods_sheets_become_rows(engine: DocumentEngine, tmp_path: Path) -> None:
    body = (
        '<table:table table:name="Stock">'
        + ods_row(["Sabun", "20"])
        + ods_row(["Beras", "7"])
        + "</table:table>"
    )
    path = _write(tmp_path, "stok.ods", odf_bytes("spreadsheet", body))
    assert _text(_process(engine, path, "application/octet-stream", "stok.ods")) == (
        "[Document: stok.ods, ODS] Sheet: Stock\nSabun | 20\nBeras | 7"
    )


def test_odp_slides_with_titles(engine: DocumentEngine, tmp_path: Path) -> None:
    body = (
        '<draw:page draw:name="p1"><draw:frame presentation:class="title"><draw:text-box>'
        "<text:p>Bem-vindos</text:p></draw:text-box></draw:frame>"
        '<draw:frame presentation:class="outline"><draw:text-box><text:p>Agenda do dia</text:p>'
        "</draw:text-box></draw:frame></draw:page>"
    )
    path = _write(tmp_path, "talk.odp", odf_bytes("presentation", body))
    outcome = _process(engine, path, "application/vnd.oasis.opendocument.presentation")
    assert _text(outcome) == "[Document: ODP, 1 slide] Slide 1: Bem-vindos\nAgenda do dia"


def test_rtf_text_with_code_page_and_unicode(engine: DocumentEngine, tmp_path: Path) -> None:
    rtf = (
        rb"{\rtf1\ansi\ansicpg1252\deff0{\fonttbl{\f0 Arial;}}{\colortbl;\red0\green0\blue0;}"
        rb"{\*\generator Writer;}\f0\fs24 Ol\'e1, pedido n\'ba 12\par "
        rb"Entrega amanh\u227?\~\u224? tarde\par}"
    )
    path = _write(tmp_path, "pedido.rtf", rtf)
    assert _text(_process(engine, path, "application/rtf", "pedido.rtf")) == (
        "[Document: pedido.rtf, RTF] Olá, pedido nº 12\nEntrega amanhã à tarde"
    )


def test_html_text_without_scripts_or_styles(engine: DocumentEngine, tmp_path: Path) -> None:
    html = (
        "<!DOCTYPE html><html><head><title>Order #42</title><style>p{color:red}</style>"
        "<script>alert('x')</script></head><body><h1>Thanks, Rahul</h1>"
        "<p>Your order &amp; invoice</p><table><tr><td>Tea</td><td>₹120</td></tr></table>"
        "<noscript>enable js</noscript></body></html>"
    )
    path = _write(tmp_path, "order.html", html.encode())
    assert _text(_process(engine, path, "text/html", "order.html")) == (
        "[Document: order.html, HTML] Order #42\nThanks, Rahul\nYour order & invoice\nTea | ₹120"
    )


def test_epub_chapters_in_spine_order(engine: DocumentEngine, tmp_path: Path) -> None:
    chapters = [
        "<html><body><h1>Chapter 1</h1><p>It was a dark night.</p></body></html>",
        "<html><body><h1>Chapter 2</h1><p>Morning came.</p></body></html>",
    ]
    path = _write(tmp_path, "book.epub", epub_bytes(chapters))
    assert _text(_process(engine, path, "application/epub+zip")) == (
        "[Document: EPUB] Chapter 1\nIt was a dark night.\nChapter 2\nMorning came."
    )


def _scanned_pdf(lines: list[str], pages: int = 1) -> bytes:
    images = []
    for _ in range(pages):
        image = Image.new("RGB", (1240, 1754), "white")  # A4 at 150 dpi
        draw = ImageDraw.Draw(image)
        font = ImageFont.load_default(size=48)
        for index, line in enumerate(lines):
            draw.text((100, 150 + 90 * index), line, fill="black", font=font)
        images.append(image)
    buffer = io.BytesIO()
    images[0].save(buffer, format="PDF", save_all=True, append_images=images[1:], resolution=150)
    return buffer.getvalue()


def test_a_scanned_pdf_is_read_by_ocr_within_the_page_budget(
    engine: DocumentEngine, tmp_path: Path
) -> None:
    lines = ["INVOICE 2231", "Total due 450.00", "Thank you"]
    path = _write(tmp_path, "scan.pdf", _scanned_pdf(lines))
    text = _text(_process(engine, path, "application/pdf", "scan.pdf"))
    assert text.startswith("[Document: scan.pdf, PDF, 1 page, read by OCR] "), text
    for word in ("INVOICE", "2231", "450.00", "Thank"):
        assert word in text, (word, text)
    three = _write(tmp_path, "three.pdf", _scanned_pdf(["Page of a scan"], pages=3))
    budgeted = _text(_process(engine, three, "application/pdf", "", {"ocr_pages": 2}))
    assert budgeted.startswith(
        "[Document: PDF, 3 pages, 2 read by OCR, 1 scanned page not read] "
    ), budgeted
    off = _text(_process(engine, three, "application/pdf", "", {"ocr_pages": 0}))
    assert off == "[Document: PDF, 3 pages, 3 scanned pages not read, no text found]"


def _timed(engine: DocumentEngine, path: Path, mime: str) -> ProcessingSuccess | ProcessingFailure:
    started = time.perf_counter()
    outcome = _process(engine, path, mime)
    assert time.perf_counter() - started < HOSTILE_SECONDS
    return outcome


def _xlsx_with_rows(rows: str) -> bytes:
    """A workbook written by openpyxl whose sheet XML gets `rows` spliced in."""
    bomb = io.BytesIO()
    with (
        zipfile.ZipFile(io.BytesIO(xlsx_bytes({"S": [["a"]]}))) as source,
        zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as target,
    ):
        for entry in source.infolist():
            content = source.read(entry)
            if entry.filename == "xl/worksheets/sheet1.xml":
                content = content.replace(b"<sheetData>", b"<sheetData>" + rows.encode())
            target.writestr(entry.filename, content)
    return bomb.getvalue()


def test_xlsx_bombs_are_bounded(engine: DocumentEngine, tmp_path: Path) -> None:
    # Two million identical empty rows compress far beyond any real sheet: refused.
    path = _write(tmp_path, "bomb.xlsx", _xlsx_with_rows("<row/>" * 2_000_000))
    failure = _timed(engine, path, XLSX)
    assert isinstance(failure, ProcessingFailure), failure
    assert failure.reason == "too_large"
    assert failure.marker.startswith("[Document not processed: too large (compressed ")
    # A million numbered empty rows pass the ratio: reading stops at the row bound.
    numbered = "".join(f'<row r="{n}"/>' for n in range(2, 1_000_002))
    path = _write(tmp_path, "empty.xlsx", _xlsx_with_rows(numbered))
    assert _text(_timed(engine, path, XLSX)) == ("[Document: XLSX] Sheet: S\n[…more rows not read]")
    # Rows of random values compress like data: text up to the output budget.
    many = xlsx_bytes({"S": [[os.urandom(4).hex()] for _ in range(30_000)]})
    long_path = _write(tmp_path, "long.xlsx", many)
    text = _text(_timed(engine, long_path, XLSX))
    assert text.startswith("[Document: XLSX] Sheet: S\n")
    assert text.endswith("more characters not shown]"), text[-200:]


def test_ods_bombs_are_bounded(engine: DocumentEngine, tmp_path: Path) -> None:
    # One element each standing for a million rows of 16,384 cells: never expanded.
    body = (
        '<table:table table:name="S">'
        + ods_row(["x"], repeat_rows=1_048_576, repeat_cells=16_384)
        + ods_row([""], repeat_rows=1_048_576, repeat_cells=16_384)
        + "</table:table>"
    )
    path = _write(tmp_path, "bomb.ods", odf_bytes("spreadsheet", body))
    text = _text(_timed(engine, path, "application/vnd.oasis.opendocument.spreadsheet"))
    assert text.startswith("[Document: ODS] Sheet: S\nx | x | x"), text[:100]
    assert len(text) < 7000
    # A huge content.xml that compresses like a bomb is refused before parsing.
    rows = ods_row(["y"]) * 400_000
    flat = odf_bytes("spreadsheet", f'<table:table table:name="S">{rows}</table:table>')
    refused = _timed(engine, _write(tmp_path, "flat.ods", flat), "application/octet-stream")
    assert isinstance(refused, ProcessingFailure), refused
    assert refused.reason == "too_large"


def test_a_zip_of_no_known_format_is_unsupported(engine: DocumentEngine, tmp_path: Path) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("photos/1.jpg", b"\xff\xd8")
    path = _write(tmp_path, "photos.zip", buffer.getvalue())
    failure = _process(engine, path, "application/zip")
    assert isinstance(failure, ProcessingFailure)
    assert failure.marker == "[Unsupported document: application/zip]"


def test_xml_entities_and_doctypes_are_refused(engine: DocumentEngine, tmp_path: Path) -> None:
    # Billion laughs inside content.xml: defusedxml refuses the DTD before expanding.
    laughs = (
        '<?xml version="1.0"?><!DOCTYPE d [<!ENTITY a "ha"><!ENTITY b "&a;&a;&a;&a;&a;&a;">'
        '<!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;">]>'
    )
    content = laughs + "<d>&c;</d>"
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("mimetype", "application/vnd.oasis.opendocument.text")
        archive.writestr("content.xml", content)
    path = _write(tmp_path, "laughs.odt", buffer.getvalue())
    failure = _timed(engine, path, "application/vnd.oasis.opendocument.text")
    assert isinstance(failure, ProcessingFailure), failure
    assert failure.reason == "corrupt"
    assert "DTD" in (failure.detail or ""), failure.detail
