"""The one interface every media processor implements.

A processor turns a job (and its staged file, when there is one) into text for the bot,
or into a failure: a reason code for operators plus a user-visible marker that still
resolves the placeholder. Retryable trouble (an engine crash, a temporary resource
shortage) is raised as TransientProcessingError; the worker retries it with backoff.

Processors that burn CPU declare `cpu_bound`; the worker runs them in a separate
process (`process_blocking`) under a wall-clock limit so the event loop that claims and
delivers jobs never stalls. Light ones implement the coroutine `process`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from services.common.errors import ChatbotError, InvalidInputError
from services.common.routing import MediaCondition
from services.common.store import MediaJob


class TransientProcessingError(ChatbotError):
    """Processing failed for a reason that may pass; the job is retried with backoff."""


@dataclass(frozen=True, slots=True)
class ProcessingSuccess:
    """The text the bot sees instead of the media (before the caption is appended)."""

    text: str


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


ProcessingOutcome = ProcessingSuccess | ProcessingFailure

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


def job_condition(job: MediaJob) -> MediaCondition:
    """The condition recorded in the job's route key (`condition|kind|mime`)."""
    head = job.route.split("|", 1)[0]
    try:
        return MediaCondition(head)
    except ValueError:
        return MediaCondition.STAGED if job.has_staged_file else MediaCondition.CORRUPT


def timeout_marker(job: MediaJob) -> str:
    return f"[{kind_label(job.media_kind).capitalize()} not processed: timed out]"


def failed_marker(job: MediaJob) -> str:
    return f"[{kind_label(job.media_kind).capitalize()} could not be processed]"


class Processor:
    """Built from a pool definition's `options`; must be cheap to construct.

    Subclasses override exactly one of `process` (I/O-light, runs on the event loop) or
    `process_blocking` (CPU-bound, runs in a worker process; the processor is rebuilt
    there from its registry name and options, so it must not hold open resources).
    """

    def __init__(self, options: Mapping[str, Any]) -> None:
        self.options = dict(options)

    @property
    def cpu_bound(self) -> bool:
        return False

    async def process(self, job: MediaJob, staged_file: Path | None) -> ProcessingOutcome:
        return self.process_blocking(job, staged_file)

    def process_blocking(self, job: MediaJob, staged_file: Path | None) -> ProcessingOutcome:
        raise NotImplementedError(f"{type(self).__name__} implements neither process method")


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
