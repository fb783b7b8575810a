"""The document processor on documents made here (fpdf2, python-docx, text in several
encodings) and on the hostile corpus: zip bombs, a PDF declaring 100,000 pages, lying
page trees, encrypted, truncated and garbage files. Hostile cases are timed and their
Python memory measured."""

from __future__ import annotations

import os
import random
import time
import tracemalloc
from pathlib import Path
from typing import Any

import pytest

from services.common.errors import InvalidInputError
from services.media_svc.engines import zip_parts
from services.media_svc.processors.base import ProcessingFailure, ProcessingSuccess
from services.media_svc.processors.contract import ProcessorInput
from services.media_svc.processors.document import DocumentProcessor
from tests.helpers.vision_inputs import (
    docx_bytes,
    docx_empty_paragraphs_bomb,
    docx_spaces_bomb,
    pdf_bytes,
    pdf_declaring_pages,
)

PDF = "application/pdf"
DOCX = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"


def _process(
    path: Path, mime: str, file_name: str = "", options: dict[str, Any] | None = None
) -> Any:
    parsed = DocumentProcessor.parse_options(options or {})
    item = ProcessorInput(
        media_kind="MEDIA_KIND_DOCUMENT",
        mime=mime,
        path=path,
        file_name=file_name,
        size=path.stat().st_size,
        limits=parsed.limits,
    )
    return DocumentProcessor.process(None, parsed, item)


def _text(outcome: object) -> str:
    assert isinstance(outcome, ProcessingSuccess), outcome
    return outcome.text


def _failure(outcome: object) -> ProcessingFailure:
    assert isinstance(outcome, ProcessingFailure), outcome
    return outcome


def _write(tmp_path: Path, name: str, content: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(content)
    return path


def _bounded_run(
    path: Path, mime: str, options: dict[str, Any] | None = None, seconds: float = 3.0
) -> ProcessingFailure:
    """Runs the processor on a hostile file: within `seconds`, under 64 MB of Python
    allocations, ending in a failure marker."""
    tracemalloc.start()
    started = time.monotonic()
    try:
        outcome = _process(path, mime, "hostile", options)
        elapsed = time.monotonic() - started
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert elapsed < seconds
    assert peak < 64 * 1024 * 1024
    return _failure(outcome)


def test_pdf_pages_text_and_count(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "upload.bin",
        pdf_bytes(["Quarterly report", "Revenue grew by 12 percent", "Thanks for reading"]),
    )
    assert _text(_process(path, PDF, "report.pdf")) == (
        "[Document: report.pdf, PDF, 3 pages] Quarterly report\n"
        "Revenue grew by 12 percent\nThanks for reading"
    )


def test_pdf_text_stops_at_the_budget_and_says_what_is_left(tmp_path: Path) -> None:
    pages = [f"Page {n} says something moderately long about topic {n}." for n in range(40)]
    path = _write(tmp_path, "long.pdf", pdf_bytes(pages))
    text = _text(_process(path, PDF, "long.pdf", {"max_output_chars": 120}))
    assert text.startswith("[Document: long.pdf, PDF, 40 pages] Page 0 says something")
    # Two pages fill the budget; the rest are not even parsed.
    assert text.endswith(" more characters and 37 more pages not shown]")


def test_pdf_without_text_and_without_a_name(tmp_path: Path) -> None:
    path = _write(tmp_path, "blank.pdf", pdf_bytes(["", ""]))
    assert _text(_process(path, PDF)) == "[Document: PDF, 2 pages, no text found]"


@pytest.mark.parametrize("encryption", ["RC4", "AES_256"])
def test_pdf_with_a_user_password_is_refused(tmp_path: Path, encryption: str) -> None:
    path = _write(
        tmp_path, "locked.pdf", pdf_bytes(["secret"], user_password="pw", encryption=encryption)
    )
    failure = _failure(_process(path, PDF, "locked.pdf"))
    assert (failure.reason, failure.marker) == (
        "unsupported",
        "[Unsupported document: encrypted PDF]",
    )


@pytest.mark.parametrize("encryption", ["RC4", "AES_128", "AES_256"])
def test_pdf_with_only_an_owner_password_is_read(tmp_path: Path, encryption: str) -> None:
    path = _write(
        tmp_path,
        "restricted.pdf",
        pdf_bytes(["open to read"], user_password="", encryption=encryption),
    )
    assert _text(_process(path, PDF, "r.pdf")) == "[Document: r.pdf, PDF, 1 page] open to read"


def test_pdf_declaring_100000_pages_is_refused_before_parsing_pages(tmp_path: Path) -> None:
    path = _write(tmp_path, "huge.pdf", pdf_declaring_pages(100_000))
    failure = _bounded_run(path, PDF, seconds=1.0)
    assert (failure.reason, failure.marker) == (
        "too_large",
        "[Document not processed: too large (100,000 pages)]",
    )


def test_pdf_whose_page_tree_holds_more_than_it_declares(tmp_path: Path) -> None:
    path = _write(tmp_path, "liar.pdf", pdf_declaring_pages(1, kids=5000))
    failure = _bounded_run(path, PDF, {"max_pages": 100}, seconds=2.0)
    assert failure.marker == "[Document not processed: too large (more than 100 pages)]"
    # Within the limit the same trick is just a document with that many pages.
    small = _write(tmp_path, "fine.pdf", pdf_declaring_pages(1, kids=3))
    assert _text(_process(small, PDF, "fine.pdf")).startswith(
        "[Document: fine.pdf, PDF, 3 pages] Hello from a crafted PDF"
    )


def test_docx_paragraphs_and_table(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "minutes.docx",
        docx_bytes(
            ["Minutes of the meeting", "Budget approved"],
            table=[["Item", "Owner"], ["Slides", "Ana"]],
        ),
    )
    assert _text(_process(path, DOCX, "minutes.docx")) == (
        "[Document: minutes.docx, DOCX] Minutes of the meeting\nBudget approved\n"
        "Item | Owner\nSlides | Ana"
    )


def test_docx_text_is_bounded_with_an_exact_count(tmp_path: Path) -> None:
    path = _write(tmp_path, "long.docx", docx_bytes(["0123456789" * 10] * 3))
    text = _text(_process(path, DOCX, "long.docx", {"max_output_chars": 50}))
    # 3 x 100 characters and 2 line breaks, 50 shown.
    assert text == "[Document: long.docx, DOCX] " + "0123456789" * 5 + (
        " […252 more characters not shown]"
    )


def test_docx_gigabyte_of_spaces_is_refused_from_the_zip_directory(tmp_path: Path) -> None:
    path = _write(tmp_path, "spaces.docx", docx_spaces_bomb())
    assert path.stat().st_size < 2 * 1024 * 1024
    failure = _bounded_run(path, DOCX)
    assert (failure.reason, failure.marker) == (
        "too_large",
        "[Document not processed: too large (1,073,741,824 bytes uncompressed)]",
    )


def test_docx_of_empty_paragraphs_passes_the_total_but_not_the_ratio(tmp_path: Path) -> None:
    path = _write(tmp_path, "paragraphs.docx", docx_empty_paragraphs_bomb())
    assert path.stat().st_size < 400 * 1024
    failure = _bounded_run(path, DOCX)
    assert failure.reason == "too_large"
    assert failure.marker.startswith("[Document not processed: too large (compressed ")
    assert "word/document.xml" in (failure.detail or "")


def test_docx_with_too_much_plain_looking_xml(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Random words compress poorly (no ratio alarm) and stay under the total; only the
    # XML part cap stops them. The cap is lowered so the file stays small.
    monkeypatch.setattr(zip_parts, "MAX_XML_PART_BYTES", 512 * 1024)
    words = [os.urandom(6).hex() for _ in range(60_000)]
    path = _write(tmp_path, "wordy.docx", docx_bytes([" ".join(words)]))
    failure = _bounded_run(path, DOCX)
    assert failure.reason == "too_large"
    assert failure.marker.endswith(" bytes of XML)]")
    assert "word/document.xml" in (failure.detail or "")


def test_text_files_in_utf8_and_latin1(tmp_path: Path) -> None:
    sentence = "Größe: 12 m² — café, jalapeño, naïve résumé"
    utf8 = _write(tmp_path, "notes.txt", sentence.encode("utf-8"))
    latin = sentence.replace("—", "-").replace("²", "2")
    latin1 = _write(tmp_path, "old.txt", (latin + "\nÀ bientôt, señor Müller.\n").encode("latin-1"))
    assert _text(_process(utf8, "text/plain", "notes.txt")) == (
        f"[Document: notes.txt, text] {sentence}"
    )
    assert _text(_process(latin1, "text/plain", "old.txt")) == (
        f"[Document: old.txt, text] {latin}\nÀ bientôt, señor Müller."
    )


@pytest.mark.parametrize(
    ("name", "mime", "content", "label"),
    [
        ("data.csv", "text/csv", b"name,qty\napples,3\n", "CSV"),
        ("data.json", "application/json", b'{"a": [1, 2]}', "JSON"),
        ("README.md", "application/octet-stream", b"# Title\n\n* point", "Markdown"),
    ],
)
def test_structured_text_formats(
    tmp_path: Path, name: str, mime: str, content: bytes, label: str
) -> None:
    path = _write(tmp_path, name, content)
    text = content.decode().strip()
    assert _text(_process(path, mime, name)) == f"[Document: {name}, {label}] {text}"


def test_big_text_file_is_read_in_part_and_marked(tmp_path: Path) -> None:
    path = _write(tmp_path, "big.log", b"abcdefghij" * 300_000)  # 3 MB, one line
    started = time.monotonic()
    text = _text(_process(path, "text/plain", "big.log", {"max_output_chars": 30}))
    assert time.monotonic() - started < 2.0
    assert text == (
        "[Document: big.log, text] abcdefghijabcdefghijabcdefghij"
        " […about 2,999,970 more characters not shown]"
    )


def test_empty_text_file(tmp_path: Path) -> None:
    path = _write(tmp_path, "empty.txt", b"")
    assert _text(_process(path, "text/plain", "empty.txt")) == (
        "[Document: empty.txt, text, no text found]"
    )


def _truncated(content: bytes) -> bytes:
    return content[: len(content) // 3]


@pytest.mark.parametrize(
    ("name", "mime", "content"),
    [
        ("garbage.pdf", PDF, random.Random(1).randbytes(3000)),
        ("header-only.pdf", PDF, b"%PDF-1.7\n" + random.Random(2).randbytes(64)),
        ("empty.pdf", PDF, b""),
        ("cut.pdf", PDF, pdf_bytes(["x"])[:40]),
        ("garbage.docx", DOCX, random.Random(3).randbytes(3000)),
        ("cut.docx", DOCX, _truncated(docx_bytes(["some text"]))),
        ("zip-header.docx", DOCX, b"PK\x03\x04" + b"\x00" * 100),
        ("binary.txt", "text/plain", bytes(range(256)) * 20),
    ],
)
def test_garbage_and_truncated_documents_are_corrupt(
    tmp_path: Path, name: str, mime: str, content: bytes
) -> None:
    path = _write(tmp_path, name, content)
    failure = _bounded_run(path, mime, seconds=2.0)
    assert (failure.reason, failure.marker) == (
        "corrupt",
        "[Corrupted document: could not be decoded]",
    )


def test_unknown_and_foreign_formats_are_unsupported(tmp_path: Path) -> None:
    legacy = _write(tmp_path, "old.doc", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 500)
    zipped = _write(tmp_path, "photos.zip", _zip_of({"a.jpg": b"x"}))
    assert _failure(_process(legacy, "application/msword", "old.doc")).marker == (
        "[Unsupported document: application/msword]"
    )
    assert _failure(_process(zipped, "application/zip", "photos.zip")).marker == (
        "[Unsupported document: application/zip]"
    )
    weird = _write(tmp_path, "x", b"\x00\x01")
    assert _failure(_process(weird, "application/x-\x1b[31mevil", "x")).marker == (
        "[Unsupported document: unknown type]"
    )


def _zip_of(files: dict[str, bytes]) -> bytes:
    import io  # noqa: PLC0415
    import zipfile  # noqa: PLC0415

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def test_files_over_the_size_limit_are_not_opened(tmp_path: Path) -> None:
    path = _write(tmp_path, "big.pdf", b"%PDF-1.4\n" + b"0" * 5000)
    failure = _failure(_process(path, PDF, "big.pdf", {"max_file_bytes": 1000}))
    assert failure.marker == "[Document not processed: too large (5,009 bytes)]"


def test_options_are_the_limits_and_the_ocr_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(InvalidInputError, match="unknown options"):
        DocumentProcessor.parse_options({"ocr_threds": 1})
    with pytest.raises(InvalidInputError, match=r"options\.ocr_pages"):
        DocumentProcessor.parse_options({"ocr_pages": 2.5})
    assert DocumentProcessor.parse_options({}).ocr_pages == 5
    monkeypatch.setenv("MEDIA_DOCUMENT_OCR_PAGES", "2")
    assert DocumentProcessor.parse_options({}).ocr_pages == 2
    assert DocumentProcessor.parse_options({"ocr_pages": 0}).ocr_pages == 0
    monkeypatch.setenv("MEDIA_DOCUMENT_OCR_PAGES", "many")
    with pytest.raises(InvalidInputError, match="MEDIA_DOCUMENT_OCR_PAGES"):
        DocumentProcessor.parse_options({})
    monkeypatch.delenv("MEDIA_DOCUMENT_OCR_PAGES")
    with pytest.raises(InvalidInputError, match="max_pages"):
        DocumentProcessor.parse_options({"max_pages": 0})
    assert DocumentProcessor.parse_options({"max_pages": 7}).limits.max_pages == 7
