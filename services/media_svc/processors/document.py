"""Documents become their text, bounded, with the file name, format and page count in
front: PDF, DOCX, XLSX, ODS, PPTX, ODP, ODT, EPUB, RTF, HTML, plain text, CSV, JSON and
Markdown.

`[Document: report.pdf, PDF, 12 pages] <text> […1,234 more characters not shown]`
`[Document: scan.pdf, PDF, 1 page, read by OCR] <text>`
`[Document: deck.pptx, PPTX, 3 slides] Slide 1: Q3 results …`

Encrypted, truncated and garbage files become a clear marker. The parsers are imported
in the worker process only; the OCR engine is loaded there on the first scanned page (a
pool that never sees one never pays for it).

Options: the limits (`max_pages`, `max_output_chars`, `max_file_bytes`,
`max_decompressed_bytes`, `max_compression_ratio`, `max_pixels`, …), `ocr_pages` (PDF
pages without a text layer read by OCR per document; `$MEDIA_DOCUMENT_OCR_PAGES`, else 5;
0 turns OCR off) and `ocr_threads` (onnxruntime threads of the OCR engine; 1).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from services.common.errors import InvalidInputError
from services.media_svc.processors.base import (
    ProcessingFailure,
    ProcessingOutcome,
    ProcessingSuccess,
    option_number,
    reject_unknown_options,
)
from services.media_svc.processors.contract import (
    BlockingProcessor,
    ProcessorInput,
    ProcessorLimits,
)

if TYPE_CHECKING:
    from services.media_svc.engines.extracted import Extracted
    from services.media_svc.engines.ocr import OcrEngine

OCR_PAGES_ENV = "MEDIA_DOCUMENT_OCR_PAGES"
DEFAULT_OCR_PAGES = 5
MAX_OCR_PAGES = 100


@dataclass(frozen=True, slots=True)
class DocumentOptions:
    limits: ProcessorLimits
    ocr_pages: int = DEFAULT_OCR_PAGES
    ocr_threads: int = 1


@dataclass
class DocumentEngine:
    """The OCR engine, loaded on the first page that needs it, then kept."""

    threads: int = 1
    _ocr: OcrEngine | None = field(default=None, repr=False)

    def ocr(self) -> OcrEngine:
        if self._ocr is None:
            from services.media_svc.engines.ocr import OcrEngine  # noqa: PLC0415 - worker only

            self._ocr = OcrEngine.load(threads=self.threads)
        return self._ocr


def _whole(value: float, key: str, maximum: int) -> int:
    if value != int(value) or value > maximum:
        raise InvalidInputError(f"{key}: must be a whole number from 0 to {maximum}, got {value!r}")
    return int(value)


def document_head(file_name: str, extracted: Extracted) -> str:
    """`[Document: report.pdf, PDF, 12 pages]`; the name is left out when unknown."""
    parts = [file_name] if file_name else []
    parts.append(extracted.format)
    if extracted.pages is not None:
        plural = "s" if extracted.pages != 1 else ""
        parts.append(f"{extracted.pages:,} {extracted.unit}{plural}")
    if extracted.ocr_pages:
        parts.append(
            "read by OCR"
            if extracted.ocr_pages == extracted.pages
            else (f"{extracted.ocr_pages:,} read by OCR")
        )
    if extracted.unread_scans:
        plural = "s" if extracted.unread_scans != 1 else ""
        parts.append(f"{extracted.unread_scans:,} scanned page{plural} not read")
    if not extracted.text:
        parts.append("no text found")
    return f"[Document: {', '.join(parts)}]"


class DocumentProcessor(BlockingProcessor[DocumentOptions, DocumentEngine]):
    """See the module docstring for the options."""

    @classmethod
    def parse_options(cls, options: Mapping[str, Any]) -> DocumentOptions:
        reject_unknown_options(
            options, set(ProcessorLimits.KEYS | {"ocr_pages", "ocr_threads"}), "document"
        )
        env_pages = os.environ.get(OCR_PAGES_ENV, "").strip()
        default_pages: float = DEFAULT_OCR_PAGES
        if env_pages:
            try:
                default_pages = float(env_pages)
            except ValueError:
                raise InvalidInputError(
                    f"{OCR_PAGES_ENV}: must be a whole number, got {env_pages!r}"
                ) from None
            _whole(default_pages, OCR_PAGES_ENV, MAX_OCR_PAGES)
        pages = option_number(options, "ocr_pages", default_pages, 0)
        threads = option_number(options, "ocr_threads", 1, 0)
        return DocumentOptions(
            limits=ProcessorLimits.from_options(options),
            ocr_pages=_whole(pages, "options.ocr_pages", MAX_OCR_PAGES),
            ocr_threads=_whole(threads, "options.ocr_threads", 64),
        )

    @classmethod
    def load_engine(cls, options: DocumentOptions) -> DocumentEngine:
        # Importing the parsers now spares the first job the wait.
        import services.media_svc.engines.documents  # noqa: F401, PLC0415 - worker only

        return DocumentEngine(options.ocr_threads)

    @classmethod
    def process(
        cls, engine: DocumentEngine | None, options: DocumentOptions, item: ProcessorInput
    ) -> ProcessingOutcome:
        from services.media_svc.engines import documents  # noqa: PLC0415 - worker only

        if item.path is None:
            return documents.corrupt("no staged file")
        engine = engine if engine is not None else DocumentEngine(options.ocr_threads)
        extracted = documents.extract(
            item.path,
            item.mime,
            item.file_name,
            options.limits,
            ocr=engine.ocr,
            ocr_pages=options.ocr_pages,
        )
        if isinstance(extracted, ProcessingFailure):
            return extracted
        head = document_head(item.file_name, extracted)
        return ProcessingSuccess(f"{head} {extracted.text}" if extracted.text else head)
