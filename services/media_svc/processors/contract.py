"""The processor contract: what a processor receives and the two kinds of processor.

A processor never sees the lease-carrying job: it gets a small `ProcessorInput` (kind,
base MIME, staged path, caption, sanitized file name, size, limits, language hints) and
returns a `ProcessingOutcome`. Two distinct types:

- `AsyncProcessor`: I/O-light work on the event loop (markers, the stub, a call to an
  HTTP describer). Built once per definition load, from its validated options.
- `BlockingProcessor`: CPU-bound work in the pool's own worker processes. Its options
  are parsed once in the parent (`parse_options`, cheap, validating); its engine
  (models, OCR sessions) is loaded once per worker process (`load_engine`) and reused
  for every job that process runs (`process`). All three are classmethods, so nothing
  but the parsed options (a picklable frozen dataclass) crosses the process boundary.
  Heavy libraries are imported inside `load_engine`/`process` (or engine modules they
  import lazily), never at module import, so gateway and queue_svc never load them.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Generic, TypeVar

from services.common.vocabulary import MediaCondition
from services.media_svc.processors.base import (
    ProcessingOutcome,
    option_number,
    reject_unknown_options,
)

MIB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class ProcessorLimits:
    """Bounds every processor enforces; a breach is a failure marker, never a crash."""

    # Largest staged file accepted at all.
    max_file_bytes: int = 100 * MIB
    # Decoded pixels of one image or frame (decompression bombs).
    max_pixels: int = 40_000_000
    # Pages of a document, by the declared count, read before any page is parsed.
    max_pages: int = 500
    # Seconds of audio/video transcribed; longer media is cut and marked, not failed.
    max_duration_seconds: float = 900.0
    # Characters of extracted text the bot sees; the rest is counted in a marker.
    max_output_chars: int = 6000
    # Total uncompressed bytes of an archive-based file (DOCX) and of decoded text.
    max_decompressed_bytes: int = 200 * MIB
    # Largest uncompressed/compressed ratio of one archive entry (zip bombs).
    max_compression_ratio: float = 200.0

    KEYS: ClassVar[frozenset[str]] = frozenset(
        {
            "max_file_bytes",
            "max_pixels",
            "max_pages",
            "max_duration_seconds",
            "max_output_chars",
            "max_decompressed_bytes",
            "max_compression_ratio",
        }
    )

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> ProcessorLimits:
        """Reads the limit keys present in a pool's options (others keep defaults)."""
        default = cls()
        return cls(
            max_file_bytes=int(option_number(options, "max_file_bytes", default.max_file_bytes, 1)),
            max_pixels=int(option_number(options, "max_pixels", default.max_pixels, 1)),
            max_pages=int(option_number(options, "max_pages", default.max_pages, 1)),
            max_duration_seconds=option_number(
                options, "max_duration_seconds", default.max_duration_seconds, 1
            ),
            max_output_chars=int(
                option_number(options, "max_output_chars", default.max_output_chars, 1)
            ),
            max_decompressed_bytes=int(
                option_number(options, "max_decompressed_bytes", default.max_decompressed_bytes, 1)
            ),
            max_compression_ratio=option_number(
                options, "max_compression_ratio", default.max_compression_ratio, 1
            ),
        )


@dataclass(frozen=True, slots=True)
class ProcessorInput:
    """Everything a processor may use about one media message."""

    # A MediaKind name, e.g. "MEDIA_KIND_VOICE_NOTE".
    media_kind: str
    # Base MIME: lower case, parameters stripped ("audio/ogg"); "" when unknown.
    mime: str
    # The staged file, already checked to be a regular file (not a symlink) inside the
    # staging directory; None for jobs without one (corrupt, over quota).
    path: Path | None
    # The sender's caption (the worker appends it to the result; given for context).
    caption: str = ""
    # The sender's file name, sanitized (no control characters or path parts); "" if none.
    file_name: str = ""
    # Bytes of the staged file.
    size: int = 0
    condition: MediaCondition = MediaCondition.STAGED
    # Node's reason for corrupt / over-quota media (for operators, not the user).
    condition_detail: str | None = None
    # 1 on the first run; transient failures are retried with attempt + 1.
    attempt: int = 1
    limits: ProcessorLimits = field(default_factory=ProcessorLimits)
    # ISO 639-1 codes the bot expects, most likely first (from the bot configuration).
    # Empty: detect freely. The first one is the fallback when detection is unsure.
    languages: tuple[str, ...] = ()
    # The bot's transcription engine ("local", "remote"); "" leaves it to the pool.
    speech_engine: str = ""
    # A job done in parts: the progress its last part saved (`ProcessingProgress`),
    # None on its first part. Only the processor that wrote it reads it.
    checkpoint: str | None = None


class AsyncProcessor(ABC):
    """Runs on the event loop; must not block it."""

    # Option keys the processor accepts besides the limits.
    OPTIONS: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, options: Mapping[str, Any]) -> None:
        reject_unknown_options(options, set(self.OPTIONS | ProcessorLimits.KEYS), self.name())
        self.options = dict(options)
        self.limits = ProcessorLimits.from_options(options)

    @classmethod
    def name(cls) -> str:
        return cls.__name__

    @abstractmethod
    async def process(self, item: ProcessorInput) -> ProcessingOutcome: ...


OptionsT = TypeVar("OptionsT")
EngineT = TypeVar("EngineT")


class BlockingProcessor(ABC, Generic[OptionsT, EngineT]):
    """Runs in the pool's worker processes; see the module docstring."""

    @classmethod
    @abstractmethod
    def parse_options(cls, options: Mapping[str, Any]) -> OptionsT:
        """Validates the pool's options (InvalidInputError naming the defect); cheap,
        imports nothing heavy. The result must be picklable."""

    @classmethod
    def limits(cls, options: OptionsT) -> ProcessorLimits:
        """The limits a parsed option set carries (default: the built-in limits)."""
        limits = getattr(options, "limits", None)
        return limits if isinstance(limits, ProcessorLimits) else ProcessorLimits()

    @classmethod
    @abstractmethod
    def load_engine(cls, options: OptionsT) -> EngineT:
        """Once per worker process: load models, open sessions."""

    @classmethod
    @abstractmethod
    def process(cls, engine: EngineT, options: OptionsT, item: ProcessorInput) -> ProcessingOutcome:
        """One job. Permanent problems return ProcessingFailure; TransientProcessingError
        (or any other exception) is retried with backoff up to the pool's attempts."""
