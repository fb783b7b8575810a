"""Outcomes of a processor run and the option parsers every processor shares.

A processor turns a media message into text for the bot, or into a failure: a reason
code for operators plus a user-visible marker that still resolves the placeholder.
Retryable trouble (an engine crash, a temporary resource shortage) is raised as
TransientProcessingError; the worker retries it with backoff. The two kinds of
processor (on the event loop, or in the pool's own worker processes) are defined in
`contract.py`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from services.common.errors import ChatbotError, InvalidInputError

if TYPE_CHECKING:
    from pathlib import Path

    from services.media_svc.processors.contract import ProcessorInput


class TransientProcessingError(ChatbotError):
    """Processing failed for a reason that may pass; the job is retried with backoff."""


@dataclass(frozen=True, slots=True)
class ProcessingSuccess:
    """The text the bot sees instead of the media (before the caption is appended),
    and what a processor knows as values (the spoken language of a transcript, as an
    ISO 639-1 code with the detector's probability for it)."""

    text: str
    language: str | None = None
    language_probability: float | None = None

    def media_result(self) -> str | None:
        """The values as the proto3 JSON of chatbot.common.v1.MediaResult (kept with the
        job, delivered as the message's typed field); None when there are none."""
        values: dict[str, object] = {}
        if self.language is not None:
            values["language"] = self.language
        if self.language_probability is not None:
            values["languageProbability"] = round(self.language_probability, 4)
        return json.dumps(values, sort_keys=True) if values else None


@dataclass(frozen=True, slots=True)
class ProcessingFailure:
    """A permanent failure. `reason` is a code (corrupt, unsupported, over_quota,
    too_large, timed_out, failed); `marker` is what the bot sees; `detail` is more for
    operators only (the failed job's error becomes `reason: detail`)."""

    reason: str
    marker: str
    detail: str | None = None

    @property
    def error(self) -> str:
        """What the failed job records for ListFailedJobs."""
        return f"{self.reason}: {self.detail}" if self.detail else self.reason


@dataclass(frozen=True, slots=True)
class ProcessingProgress:
    """A part of the job done, more to come: the worker saves `checkpoint` (a JSON
    object only the processor reads) with the job, then runs the processor again with it
    (`ProcessorInput.checkpoint`), now or after a cheaper job of the pool went first.
    `remaining` is the share of the work left, in (0, 1]: the job's cost when re-queued."""

    checkpoint: str
    remaining: float


ProcessingOutcome = ProcessingSuccess | ProcessingFailure | ProcessingProgress

# Human words for the media kinds, used in markers.
KIND_LABELS: Mapping[str, str] = {
    "MEDIA_KIND_IMAGE": "image",
    "MEDIA_KIND_STICKER": "sticker",
    "MEDIA_KIND_AUDIO": "audio",
    "MEDIA_KIND_VOICE_NOTE": "voice note",
    "MEDIA_KIND_VIDEO": "video",
    "MEDIA_KIND_GIF": "GIF",
    "MEDIA_KIND_VIDEO_NOTE": "video note",
    "MEDIA_KIND_DOCUMENT": "document",
}


def kind_label(media_kind: str) -> str:
    return KIND_LABELS.get(media_kind, "media")


def kind_title(media_kind: str) -> str:
    """`Voice note`, `GIF`, `Video note` (capitalize() would turn GIF into Gif)."""
    label = kind_label(media_kind)
    return label[:1].upper() + label[1:]


def corrupt_failure(media_kind: str, detail: str) -> ProcessingFailure:
    return ProcessingFailure(
        reason="corrupt",
        marker=f"[Corrupted {kind_label(media_kind)}: could not be decoded]",
        detail=detail,
    )


def too_large_failure(media_kind: str, size: int, limit: int) -> ProcessingFailure:
    return ProcessingFailure(
        reason="too_large",
        marker=f"[{kind_title(media_kind)} not processed: too large]",
        detail=f"{size:,} bytes, limit {limit:,}",
    )


def staged_file(item: ProcessorInput, max_file_bytes: int) -> Path | ProcessingFailure:
    """The staged file a decoding processor may open, or why it may not: a job without
    one is corrupt (Node could not stage it), a file over `max_file_bytes` too large."""
    if item.path is None:
        return corrupt_failure(item.media_kind, "no staged file")
    if item.size > max_file_bytes:
        return too_large_failure(item.media_kind, item.size, max_file_bytes)
    return item.path


# The failure reason of a job whose staged file is not there (yet): retried first.
MISSING_FILE = "missing_file"


def timeout_marker(media_kind: str) -> str:
    return f"[{kind_label(media_kind).capitalize()} not processed: timed out]"


def failed_marker(media_kind: str) -> str:
    return f"[{kind_label(media_kind).capitalize()} could not be processed]"


def option_number(
    options: Mapping[str, Any], key: str, default: float, minimum: float = 0.0
) -> float:
    value = options.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not value >= minimum:
        raise InvalidInputError(f"options.{key}: must be a number >= {minimum}, got {value!r}")
    return float(value)


def option_string(options: Mapping[str, Any], key: str, default: str) -> str:
    value = options.get(key, default)
    if not isinstance(value, str):
        raise InvalidInputError(f"options.{key}: must be a string, got {value!r}")
    return value


def option_bool(options: Mapping[str, Any], key: str, default: bool) -> bool:
    value = options.get(key, default)
    if not isinstance(value, bool):
        raise InvalidInputError(f"options.{key}: must be true or false, got {value!r}")
    return value


def reject_unknown_options(options: Mapping[str, Any], known: set[str], processor: str) -> None:
    unknown = set(options) - known
    if unknown:
        raise InvalidInputError(
            f"processor {processor!r}: unknown options {sorted(unknown)}; known: {sorted(known)}"
        )
