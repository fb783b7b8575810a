"""What a processor is given: a `ProcessorInput` built from a claimed job.

The staged object is fetched here, once, before any processor sees it: copied from the
MediaStore into this replica's scratch directory (a symlink in place of a staged file is
refused without being followed, and removed), within the pool's size limit.
Sender-controlled strings (file name, MIME type) are sanitized here too.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from services.common.media_store import MediaMissingError, MediaRefusedError, MediaTooLargeError
from services.common.store import BotConfig, MediaJob
from services.common.vocabulary import MediaCondition, RouteKey, base_mime
from services.media_svc.processors.base import MISSING_FILE, ProcessingFailure, kind_label
from services.media_svc.processors.contract import ProcessorInput, ProcessorLimits
from services.media_svc.processors.text import sanitize_file_name
from services.media_svc.staging import LocalCopy, MediaStaging

log = logging.getLogger(__name__)

# The bot configuration key with the languages the bot expects (ISO 639-1, most likely
# first), e.g. `"languages": ["de", "en"]`; see the README's bot configuration section.
LANGUAGES_KEY = "languages"
_LANGUAGE = re.compile(r"[a-z]{2,3}")
MAX_LANGUAGES = 10
# The bot configuration key with its transcription settings, e.g.
# `"transcription": {"engine": "remote"}`: which of the engines its pool offers
# transcribes this bot's voice notes (`local`, `remote`; absent: the pool's choice).
TRANSCRIPTION_KEY = "transcription"
# The values BotConfig accepts (store `_types.TRANSCRIPTION_ENGINES`).
SPEECH_ENGINES = frozenset({"local", "remote"})


@dataclass(frozen=True, slots=True)
class BotPreferences:
    """What a bot's configuration says about processing its media."""

    # ISO 639-1 codes, most likely first; empty: detect among the pool's candidates.
    languages: tuple[str, ...] = ()
    # "local" or "remote"; "" leaves the choice to the pool.
    speech_engine: str = ""


def job_condition(job: MediaJob) -> MediaCondition:
    """The condition recorded in the job's route key (`condition|kind|mime`)."""
    key = RouteKey.parse(job.route)
    if key is not None:
        return key.condition
    return MediaCondition.STAGED if job.has_staged_file else MediaCondition.CORRUPT


def bot_languages(config: BotConfig | None) -> tuple[str, ...]:
    """The bot's expected languages; anything malformed is ignored (and logged), so a
    bad configuration never fails a job: detection then runs freely."""
    if config is None:
        return ()
    extra: Mapping[str, Any] = config.extra
    raw = extra.get(LANGUAGES_KEY)
    if raw is None:
        return ()
    if isinstance(raw, str):
        raw = [raw]
    if not isinstance(raw, list) or not all(
        isinstance(code, str) and _LANGUAGE.fullmatch(code.strip().lower()) for code in raw
    ):
        log.warning(
            "bot %s: configuration key %r must be a list of ISO 639-1 codes such as "
            '["de", "en"]; ignored',
            config.bot_id,
            LANGUAGES_KEY,
        )
        return ()
    codes = [code.strip().lower() for code in raw]
    return tuple(dict.fromkeys(codes))[:MAX_LANGUAGES]


def bot_speech_engine(config: BotConfig | None) -> str:
    """The bot's transcription engine, "" when it has none (BotConfig has validated it)."""
    raw = config.extra.get(TRANSCRIPTION_KEY) if config is not None else None
    engine = raw.get("engine", "") if isinstance(raw, Mapping) else ""
    return engine if engine in SPEECH_ENGINES else ""


def bot_preferences(config: BotConfig | None) -> BotPreferences:
    return BotPreferences(bot_languages(config), bot_speech_engine(config))


class BotLanguages:
    """The bots' preferences (languages, transcription engine), read from their
    configuration at most once per `ttl` seconds
    per bot: a store read per job would cost more than a stub job itself, and a changed
    configuration takes effect within the TTL."""

    def __init__(
        self,
        read: Callable[[str], Awaitable[BotConfig | None]],
        ttl: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._read = read
        self._ttl = ttl
        self._clock = clock
        self._known: dict[str, tuple[float, BotPreferences]] = {}

    async def of(self, bot_id: str) -> BotPreferences:
        now = self._clock()
        cached = self._known.get(bot_id)
        if cached is not None and cached[0] > now:
            return cached[1]
        preferences = bot_preferences(await self._read(bot_id))
        if len(self._known) > 10_000:  # bounded: many bots, each re-read when needed
            self._known.clear()
        self._known[bot_id] = (now + self._ttl, preferences)
        return preferences


@dataclass(frozen=True, slots=True)
class RefusedInput:
    """The job cannot be processed as staged; `failure` resolves its placeholder."""

    failure: ProcessingFailure


async def copy_staged(
    job: MediaJob, staging: MediaStaging, limits: ProcessorLimits
) -> LocalCopy | RefusedInput | None:
    """The job's staged object as a local file; None when the job has none."""
    if not job.has_staged_file:
        return None
    label = kind_label(job.media_kind).capitalize()
    try:
        return await staging.local_copy(job.media_processing_id, limits.max_file_bytes)
    except MediaMissingError as exc:
        log.error("staged media of %s is missing: %s", job.media_processing_id, exc)
        return RefusedInput(
            ProcessingFailure(MISSING_FILE, f"[{label} could not be processed: file missing]")
        )
    except MediaRefusedError as exc:
        log.error("staged media of %s refused and removed: %s", job.media_processing_id, exc)
        return RefusedInput(
            ProcessingFailure(
                "refused",
                f"[{label} could not be processed]",
                "staged entry is not a regular file",
            )
        )
    except MediaTooLargeError as exc:
        size = exc.size if exc.size is not None else limits.max_file_bytes + 1
        return RefusedInput(
            ProcessingFailure(
                "too_large",
                f"[{label} not processed: file too large ({size / 1_048_576:.1f} MB)]",
                f"{size} bytes > limit {limits.max_file_bytes}",
            )
        )


def build_input(
    job: MediaJob,
    copy: LocalCopy | None,
    limits: ProcessorLimits,
    preferences: BotPreferences,
) -> ProcessorInput:
    return ProcessorInput(
        media_kind=job.media_kind,
        mime=base_mime(job.mime_type),
        path=None if copy is None else copy.path,
        caption=job.caption,
        file_name=sanitize_file_name(job.original_filename),
        size=0 if copy is None else copy.size,
        condition=job_condition(job),
        condition_detail=job.condition_detail,
        attempt=job.attempts,
        limits=limits,
        languages=preferences.languages,
        speech_engine=preferences.speech_engine,
        checkpoint=job.checkpoint,
    )
