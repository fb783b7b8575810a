"""Text out of spreadsheets, slide decks and OpenDocument files, read part by part.

- XLSX, ODS: each sheet as `Sheet: <name>` then one line per row, `a | b | c`.
- PPTX, ODP: `Slide 1: <title>` then the slide's other text, slides in deck order.
- ODT: headings and paragraphs in order, table rows as `a | b | c`.
- EPUB: the chapters in reading (spine) order, as HTML text.

Every archive passes `zip_parts.check_archive` first. Sheets are streamed: reading stops
at `MAX_ROWS` rows (empty ones count: a sheet can declare a million) or `MAX_CELLS` cells
per row, and ODF's `number-columns-repeated` / `number-rows-repeated` (a single element
standing for 16,384 cells) are never expanded for empty cells. The text budget bounds
the rest.
"""

from __future__ import annotations

import posixpath
import zipfile
from collections.abc import Iterator
from xml.etree.ElementTree import Element

from services.media_svc.engines.extracted import Budget, Extracted
from services.media_svc.engines.markup_text import html_text
from services.media_svc.engines.zip_parts import local, parse_part, read_part, stream_part, texts

# Rows read from all the sheets of one workbook, empty ones included.
MAX_ROWS = 20_000
# Cells read from one row; the rest of a row is left out.
MAX_CELLS = 200
# Repeated copies of a non-empty ODS cell or row that are written out.
MAX_REPEAT = 50
ROWS_NOTE = "[…more rows not read]"

ODF_TYPES = {
    "application/vnd.oasis.opendocument.text": "ODT",
    "application/vnd.oasis.opendocument.spreadsheet": "ODS",
    "application/vnd.oasis.opendocument.presentation": "ODP",
}
EPUB_TYPE = "application/epub+zip"
_REL = "{http://schemas.openxmlformats.org/officeDocument/2006/relationships}id"


def office_format(archive: zipfile.ZipFile) -> str | None:
    """DOCX, XLSX, PPTX, ODT, ODS, ODP or EPUB from the archive's parts; None otherwise."""
    names = set(archive.namelist())
    if "word/document.xml" in names:
        return "DOCX"
    if "xl/workbook.xml" in names:
        return "XLSX"
    if "ppt/presentation.xml" in names:
        return "PPTX"
    if "mimetype" in names:
        declared = read_part(archive, "mimetype", 200).decode("ascii", "replace").strip()
        if declared == EPUB_TYPE:
            return "EPUB"
        return ODF_TYPES.get(declared)
    return None


def extract_office(archive: zipfile.ZipFile, label: str, max_chars: int) -> Extracted:
    budget = Budget(max_chars)
    count: int | None = None
    if label == "XLSX":
        _xlsx(archive, budget)
    elif label == "PPTX":
        count = _pptx(archive, budget)
    elif label == "EPUB":
        _epub(archive, budget)
    else:
        count = _odf(archive, label, budget)
    return Extracted(label, count, budget.render(), "slide" if count is not None else "page")


def _relationships(archive: zipfile.ZipFile, part: str) -> dict[str, str]:
    """Relationship id → part name, for `part`'s `_rels/<name>.rels`."""
    folder, name = posixpath.split(part)
    rels = posixpath.join(folder, "_rels", f"{name}.rels")
    if rels not in archive.namelist():
        return {}
    targets: dict[str, str] = {}
    for node in parse_part(archive, rels):
        target, rel_id = node.get("Target", ""), node.get("Id", "")
        if target and rel_id:
            joined = (
                target.lstrip("/") if target.startswith("/") else posixpath.join(folder, target)
            )
            targets[rel_id] = posixpath.normpath(joined)
    return targets


# XLSX


def _xlsx(archive: zipfile.ZipFile, budget: Budget) -> None:
    names = set(archive.namelist())
    shared: list[str] = []
    if "xl/sharedStrings.xml" in names:
        shared = [texts(item) for item in parse_part(archive, "xl/sharedStrings.xml")]
    targets = _relationships(archive, "xl/workbook.xml")
    rows_left = MAX_ROWS
    for sheet in parse_part(archive, "xl/workbook.xml").iter():
        if local(sheet.tag) != "sheet":
            continue
        part = targets.get(sheet.get(_REL, ""))
        if part is None or part not in names or budget.full:
            continue
        budget.add(f"Sheet: {sheet.get('name', '')}")
        rows_left = _xlsx_rows(archive, part, shared, budget, rows_left)
        if rows_left <= 0:
            budget.add(ROWS_NOTE)
            return


def _xlsx_rows(
    archive: zipfile.ZipFile, part: str, shared: list[str], budget: Budget, rows_left: int
) -> int:
    for event, element in stream_part(archive, part):
        if event != "end" or local(element.tag) != "row":
            continue
        cells = [_xlsx_cell(cell, shared) for cell in list(element)[:MAX_CELLS]]
        element.clear()
        budget.add(" | ".join(cell for cell in cells if cell))
        rows_left -= 1
        if rows_left <= 0 or budget.full:
            break
    return rows_left


def _xlsx_cell(cell: Element, shared: list[str]) -> str:
    kind = cell.get("t", "n")
    if kind == "inlineStr":
        return texts(cell)
    value = next((node.text or "" for node in cell if local(node.tag) == "v"), "")
    if kind == "s":
        index = int(value) if value.isdigit() else -1
        return shared[index] if 0 <= index < len(shared) else ""
    if kind == "b":
        return "TRUE" if value == "1" else "FALSE"
    return value


# PPTX


def _pptx(archive: zipfile.ZipFile, budget: Budget) -> int:
    targets = _relationships(archive, "ppt/presentation.xml")
    names = set(archive.namelist())
    slides = [
        targets[node.get(_REL, "")]
        for node in parse_part(archive, "ppt/presentation.xml").iter()
        if local(node.tag) == "sldId" and targets.get(node.get(_REL, "")) in names
    ]
    for number, part in enumerate(slides, start=1):
        if budget.full:
            break
        title: list[str] = []
        body: list[str] = []
        for shape in parse_part(archive, part).iter():
            if local(shape.tag) != "sp":
                continue
            kinds = {n.get("type", "") for n in shape.iter() if local(n.tag) == "ph"}
            lines = [texts(p) for p in shape.iter() if local(p.tag) == "p"]
            (title if kinds & {"title", "ctrTitle"} else body).extend(filter(None, lines))
        budget.add(
            f"Slide {number}: {' '.join(title)}".rstrip(": ") if title else f"Slide {number}"
        )
        for line in body:
            budget.add(line)
    return len(slides)


# OpenDocument (ODT, ODS, ODP)


def _odf(archive: zipfile.ZipFile, label: str, budget: Budget) -> int | None:
    root = parse_part(archive, "content.xml")
    body = next((n for n in root.iter() if local(n.tag) == label_body(label)), root)
    if label == "ODP":
        pages = [n for n in body if local(n.tag) == "page"]
        for number, page in enumerate(pages, start=1):
            title, rest = _odp_page(page)
            budget.add(f"Slide {number}: {title}" if title else f"Slide {number}")
            for line in rest:
                budget.add(line)
        return len(pages)
    rows_left = MAX_ROWS
    for block in _odf_blocks(body):
        if block is None:
            rows_left -= 1
            if rows_left <= 0:
                budget.add(ROWS_NOTE)
                break
            continue
        budget.add(block)
        if budget.full:
            break
    return None


def label_body(label: str) -> str:
    return {"ODT": "text", "ODS": "spreadsheet", "ODP": "presentation"}[label]


def _odp_page(page: Element) -> tuple[str, list[str]]:
    title = ""
    rest: list[str] = []
    for frame in page.iter():
        if local(frame.tag) != "frame":
            continue
        kind = next((v for k, v in frame.attrib.items() if local(k) == "class"), "")
        lines = [_odf_text(p) for p in frame.iter() if local(p.tag) in {"p", "h"}]
        lines = [line for line in lines if line]
        if kind == "title" and not title:
            title = " ".join(lines)
        else:
            rest.extend(lines)
    return title, rest


def _odf_blocks(body: Element) -> Iterator[str | None]:
    """Paragraphs, headings, `Sheet: name` and table rows in document order; None for
    each table row read (so the caller bounds rows, empty ones included)."""
    for node in body:
        name = local(node.tag)
        if name in {"p", "h"}:
            yield _odf_text(node)
        elif name == "table":
            table_name = next((v for k, v in node.attrib.items() if local(k) == "name"), "")
            if table_name and local(body.tag) == "spreadsheet":
                yield f"Sheet: {table_name}"
            yield from _odf_rows(node)
        elif name in {"list", "list-item", "section", "table-header-rows", "table-rows"}:
            yield from _odf_blocks(node)


def _odf_rows(table: Element) -> Iterator[str | None]:
    for node in table.iter():
        if local(node.tag) != "table-row":
            continue
        cells: list[str] = []
        for cell in node:
            if local(cell.tag) not in {"table-cell", "covered-table-cell"}:
                continue
            text = " ".join(filter(None, (_odf_text(p) for p in cell if local(p.tag) == "p")))
            repeat = _repeat(cell, "number-columns-repeated") if text else 1
            cells.extend([text] * repeat)
            if len(cells) >= MAX_CELLS:
                break
        line = " | ".join(cell for cell in cells[:MAX_CELLS] if cell)
        for _ in range(_repeat(node, "number-rows-repeated") if line else 1):
            yield None
            yield line


def _repeat(element: Element, attribute: str) -> int:
    raw = next((v for k, v in element.attrib.items() if local(k) == attribute), "1")
    return min(int(raw), MAX_REPEAT) if raw.isdigit() and int(raw) > 0 else 1


def _odf_text(element: Element) -> str:
    """A paragraph's text with `text:s` (spaces), `text:tab` and `text:line-break`."""
    parts: list[str] = [element.text or ""]
    for child in element:
        name = local(child.tag)
        if name == "s":
            parts.append(" ")
        elif name == "tab":
            parts.append("\t")
        elif name == "line-break":
            parts.append("\n")
        elif name != "note":  # footnote bodies would interrupt the sentence
            parts.append(_odf_text(child))
        parts.append(child.tail or "")
    return "".join(parts).strip()


# EPUB


def _epub(archive: zipfile.ZipFile, budget: Budget) -> None:
    container = parse_part(archive, "META-INF/container.xml")
    opf = next((n.get("full-path", "") for n in container.iter() if local(n.tag) == "rootfile"), "")
    package = parse_part(archive, opf)
    folder = posixpath.dirname(opf)
    items = {
        n.get("id", ""): posixpath.normpath(posixpath.join(folder, n.get("href", "")))
        for n in package.iter()
        if local(n.tag) == "item"
    }
    names = set(archive.namelist())
    for ref in package.iter():
        if local(ref.tag) != "itemref" or budget.full:
            continue
        part = items.get(ref.get("idref", ""))
        if part in names and part is not None:
            budget.add(html_text(read_part(archive, part).decode("utf-8", "replace")))
