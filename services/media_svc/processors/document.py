"""Documents: PDF, DOCX, plain text, CSV, JSON and Markdown become their text, bounded,
with the file name, format and page count in front.

`[Document: report.pdf, PDF, 12 pages] <text> […1,234 more characters not shown]`;
encrypted, truncated and garbage files become a clear marker. The parsers (pypdf,
python-docx, charset-normalizer) are imported in the worker process only.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from services.media_svc.processors.base import (
    ProcessingFailure,
    ProcessingOutcome,
    ProcessingSuccess,
    reject_unknown_options,
)
from services.media_svc.processors.contract import (
    BlockingProcessor,
    ProcessorInput,
    ProcessorLimits,
)


@dataclass(frozen=True, slots=True)
class DocumentOptions:
    limits: ProcessorLimits


def document_head(file_name: str, label: str, pages: int | None, empty: bool) -> str:
    """`[Document: report.pdf, PDF, 12 pages]`; the name is left out when unknown."""
    parts = [file_name] if file_name else []
    parts.append(label)
    if pages is not None:
        parts.append(f"{pages:,} page{'s' if pages != 1 else ''}")
    if empty:
        parts.append("no text found")
    return f"[Document: {', '.join(parts)}]"


class DocumentProcessor(BlockingProcessor[DocumentOptions, None]):
    """Options: the limits only (`max_pages`, `max_output_chars`, `max_file_bytes`,
    `max_decompressed_bytes`, `max_compression_ratio`, ...)."""

    @classmethod
    def parse_options(cls, options: Mapping[str, Any]) -> DocumentOptions:
        reject_unknown_options(options, set(ProcessorLimits.KEYS), "document")
        return DocumentOptions(limits=ProcessorLimits.from_options(options))

    @classmethod
    def load_engine(cls, options: DocumentOptions) -> None:
        # Nothing to keep; importing the parsers now spares the first job the wait.
        import services.media_svc.engines.documents  # noqa: F401, PLC0415 - worker only

    @classmethod
    def process(
        cls, engine: None, options: DocumentOptions, item: ProcessorInput
    ) -> ProcessingOutcome:
        from services.media_svc.engines import documents  # noqa: PLC0415 - worker only

        if item.path is None:
            return documents.corrupt("no staged file")
        extracted = documents.extract(item.path, item.mime, item.file_name, options.limits)
        if isinstance(extracted, ProcessingFailure):
            return extracted
        head = document_head(item.file_name, extracted.format, extracted.pages, not extracted.text)
        return ProcessingSuccess(f"{head} {extracted.text}" if extracted.text else head)
