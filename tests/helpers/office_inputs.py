"""Office documents written here: XLSX by openpyxl (as Excel files are), and PPTX, ODT,
ODS, ODP and EPUB as the minimal zip of XML parts their specifications require, plus
bombs of each spreadsheet kind."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Sequence

from openpyxl import Workbook

ODF_NS = (
    'xmlns:office="urn:oasis:names:tc:opendocument:xmlns:office:1.0" '
    'xmlns:text="urn:oasis:names:tc:opendocument:xmlns:text:1.0" '
    'xmlns:table="urn:oasis:names:tc:opendocument:xmlns:table:1.0" '
    'xmlns:draw="urn:oasis:names:tc:opendocument:xmlns:drawing:1.0" '
    'xmlns:presentation="urn:oasis:names:tc:opendocument:xmlns:presentation:1.0"'
)
_P = "http://schemas.openxmlformats.org/presentationml/2006/main"
_A = "http://schemas.openxmlformats.org/drawingml/2006/main"
_R = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
_PKG_RELS = "http://schemas.openxmlformats.org/package/2006/relationships"


def xlsx_bytes(sheets: dict[str, Sequence[Sequence[object]]]) -> bytes:
    book = Workbook()
    first = True
    for name, rows in sheets.items():
        sheet = book.active if first else book.create_sheet()
        assert sheet is not None
        sheet.title = name
        first = False
        for row in rows:
            sheet.append(list(row))
    buffer = io.BytesIO()
    book.save(buffer)
    return buffer.getvalue()


def _zip(parts: dict[str, str | bytes], first: tuple[str, str] | None = None) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        if first is not None:  # ODF and EPUB: `mimetype` first and stored
            archive.writestr(first[0], first[1], compress_type=zipfile.ZIP_STORED)
        for name, content in parts.items():
            archive.writestr(name, content)
    return buffer.getvalue()


def pptx_bytes(slides: Sequence[tuple[str, Sequence[str]]]) -> bytes:
    """Slides of (title, body lines), in the part layout PowerPoint writes."""
    types = "http://schemas.openxmlformats.org/package/2006/content-types"
    parts: dict[str, str | bytes] = {"[Content_Types].xml": f'<Types xmlns="{types}"/>'}
    ids = "".join(f'<p:sldId id="{256 + i}" r:id="rId{i + 1}"/>' for i in range(len(slides)))
    # Written in reverse order on purpose: the deck order is the presentation's list.
    parts["ppt/presentation.xml"] = (
        f'<p:presentation xmlns:p="{_P}" xmlns:r="{_R}"><p:sldIdLst>{ids}</p:sldIdLst>'
        "</p:presentation>"
    )
    rels = "".join(
        f'<Relationship Id="rId{i + 1}" Type="{_R}/slide" '
        f'Target="slides/slide{len(slides) - i}.xml"/>'
        for i in range(len(slides))
    )
    parts["ppt/_rels/presentation.xml.rels"] = (
        f'<Relationships xmlns="{_PKG_RELS}">{rels}</Relationships>'
    )
    for i, (title, lines) in enumerate(slides):
        body = "".join(f"<a:p><a:r><a:t>{line}</a:t></a:r></a:p>" for line in lines)
        parts[f"ppt/slides/slide{len(slides) - i}.xml"] = (
            f'<p:sld xmlns:p="{_P}" xmlns:a="{_A}"><p:cSld><p:spTree>'
            '<p:sp><p:nvSpPr><p:nvPr><p:ph type="title"/></p:nvPr></p:nvSpPr>'
            f"<p:txBody><a:p><a:r><a:t>{title}</a:t></a:r></a:p></p:txBody></p:sp>"
            '<p:sp><p:nvSpPr><p:nvPr><p:ph idx="1"/></p:nvPr></p:nvSpPr>'
            f"<p:txBody>{body}</p:txBody></p:sp>"
            "</p:spTree></p:cSld></p:sld>"
        )
    return _zip(parts)


def odf_bytes(kind: str, body: str) -> bytes:
    """An ODF package (`text`, `spreadsheet` or `presentation`) with `body` inside
    office:body/office:<kind>."""
    content = (
        f'<?xml version="1.0" encoding="UTF-8"?><office:document-content {ODF_NS} '
        f'office:version="1.3"><office:body><office:{kind}>{body}</office:{kind}>'
        "</office:body></office:document-content>"
    )
    manifest = (
        '<manifest:manifest xmlns:manifest="urn:oasis:names:tc:opendocument:xmlns:manifest:1.0"/>'
    )
    return _zip(
        {"content.xml": content, "META-INF/manifest.xml": manifest},
        ("mimetype", f"application/vnd.oasis.opendocument.{kind}"),
    )


def ods_row(cells: Sequence[str], repeat_rows: int = 1, repeat_cells: int = 1) -> str:
    rows = f' table:number-rows-repeated="{repeat_rows}"' if repeat_rows > 1 else ""
    cols = f' table:number-columns-repeated="{repeat_cells}"' if repeat_cells > 1 else ""
    inner = "".join(
        f"<table:table-cell{cols}><text:p>{cell}</text:p></table:table-cell>" for cell in cells
    )
    return f"<table:table-row{rows}>{inner}</table:table-row>"


def epub_bytes(chapters: Sequence[str]) -> bytes:
    manifest = "".join(
        f'<item id="c{i}" href="c{i}.xhtml" media-type="application/xhtml+xml"/>'
        for i in range(len(chapters))
    )
    spine = "".join(f'<itemref idref="c{i}"/>' for i in range(len(chapters)))
    parts: dict[str, str | bytes] = {
        "META-INF/container.xml": (
            '<container xmlns="urn:oasis:names:tc:opendocument:xmlns:container" version="1.0">'
            '<rootfiles><rootfile full-path="OEBPS/book.opf"/></rootfiles></container>'
        ),
        "OEBPS/book.opf": (
            '<package xmlns="http://www.idpf.org/2007/opf" version="3.0">'
            f"<manifest>{manifest}</manifest><spine>{spine}</spine></package>"
        ),
    }
    for i, html in enumerate(chapters):
        parts[f"OEBPS/c{i}.xhtml"] = html
    return _zip(parts, ("mimetype", "application/epub+zip"))
